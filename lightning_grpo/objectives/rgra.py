"""RGRA — REINFORCE with Group-Relative Advantage (arXiv 2603.18756).

GRPO without the PPO machinery: no importance ratio, no clipping; the group z-score advantage and
the KL to the reference are kept (the paper's eq. 2):

    L = −(1/n) Σ_i (1/|o_i|) Σ_t M [ Â_i · logp_t − β · kl_t ]

kl_t is the k3 estimator (ALGORITHMS.md §1). Because one-step GRPO has ρ = exp(logp − stopgrad
logp) ≡ 1 with ∇ρ = ∇logp, RGRA's *gradient* equals one-step GRPO's (with the same β and KL);
the loss *values* differ (RGRA's contains logp itself) — compare gradients, not losses. Unlike
GRPO, RGRA ignores logp_old: it is an on-policy method (one update per rollout).

Defaults: β = 0.005 (paper), ``seq_mean_token_mean``, group z-score advantage. There is no public
reference code. Metrics: ``kl`` when β > 0.
"""

from __future__ import annotations

from torch import Tensor

from lightning_grpo.objectives.base import Aggregation, KLEstimator, Objective, ObjectiveInputs, aggregate, kl_penalty


class RGRA(Objective):
    def __init__(
        self,
        beta: float = 0.005,
        aggregation: Aggregation = "seq_mean_token_mean",
        kl_estimator: KLEstimator = "k3",
    ) -> None:
        """
        Args:
            beta: KL coefficient; 0 loads no reference model.
            aggregation: ``seq_mean_token_mean`` (paper); others for ablations.
            kl_estimator: k1, k2 or k3.
        """
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = beta
        self.aggregation = aggregation
        self.kl_estimator = kl_estimator

    def __call__(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        mask, norm = inputs.mask, inputs.normalizers  # [B, T]
        adv = inputs.advantages.unsqueeze(1)  # [B, 1]
        per_token = -adv * inputs.logp  # [B, T]
        metrics: dict[str, Tensor] = {}
        if self.beta > 0:
            if inputs.ref_logp is None:
                raise ValueError("RGRA with beta > 0 needs ref_logp; the module must load a reference model")
            kl = kl_penalty(inputs.logp, inputs.ref_logp, self.kl_estimator)  # [B, T]
            per_token = per_token + self.beta * kl
            metrics["kl"] = (kl.detach() * mask).sum() / norm.num_tokens
        return aggregate(per_token, mask, self.aggregation, norm), metrics
