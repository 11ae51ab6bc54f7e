"""RGRA — REINFORCE with Group-Relative Advantage (arXiv 2603.18756).

GRPO without the PPO machinery: no importance ratio, no clipping; the group z-score advantage and
the KL to the reference are kept (the paper's eq. 2; docs/algorithms.md §6):

    L = −(1/n) Σ_i (1/|o_i|) Σ_t M [ Â_i · logp_t − β · kl_t ]

kl_t is the k3 estimator (docs/algorithms.md §1). Because one-step GRPO has ρ = exp(logp − stopgrad
logp) ≡ 1 with ∇ρ = ∇logp, RGRA's *gradient* equals one-step GRPO's (with the same β and KL);
the loss *values* differ (RGRA's contains logp itself) — compare gradients, not losses. Unlike
GRPO, RGRA ignores logp_old: it is an on-policy method (one update per rollout); with
``kl_ratio_weighted`` its KL weight is exp(logp − stopgrad(logp)) (value 1, gradient ∇logp).

Defaults: β = 0.005 (paper), ``seq_mean_token_mean``, group z-score advantage. There is no public
reference code. Metrics: ``kl`` when β > 0.

Reproduces exactly (tests/reference): verl 0.9.1 ``loss_mode="gpg"`` (−Â · logp, any
``loss_agg_mode``) with ``use_kl_loss``, ``kl_loss_coef`` ↔ ``beta`` and ``kl_loss_type`` ↔
``kl_estimator``. Its gradient is TRL's ``loss_type="grpo"`` with one update per rollout.
"""

from __future__ import annotations

import torch
from torch import Tensor

from typing import Any

from lightning_grpo.objectives.base import Objective, ObjectiveInputs, aggregate


class RGRA(Objective):
    def __init__(self, *, beta: float = 0.005, **shared: Any) -> None:
        """
        Args:
            beta: KL coefficient (the paper's 0.005); 0 loads no reference model.
            shared: the other options every objective shares (:class:`Objective`).
                ``kl_ratio_weighted`` weights kl_t by exp(logp − stopgrad(logp)) (the on-policy
                ratio with its gradient, as one-step GRPO under TRL's ``use_bias_correction_kl``).
        """
        super().__init__(beta=beta, **shared)

    def kl_weight(self, inputs: ObjectiveInputs) -> Tensor:
        return torch.exp(inputs.logp - inputs.logp.detach())  # [B, T], value 1, gradient ∇logp

    def policy_loss(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        adv = inputs.advantages.unsqueeze(1)  # [B, 1]
        per_token = -adv * inputs.logp  # [B, T]
        return aggregate(per_token, inputs.mask, self.aggregation, inputs.normalizers, self.loss_scale_factor), {}
