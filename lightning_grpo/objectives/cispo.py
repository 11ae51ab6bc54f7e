"""CISPO — Clipped IS-weight Policy Optimization (MiniMax-M1, arXiv 2506.13585).

Instead of clipping the token update (which drops the gradient of clipped tokens, often the rare
"reflective" ones), CISPO clips the importance weight and always keeps the REINFORCE gradient:

    L_t = −stopgrad(min(ρ_t, ε_max)) · Â_i · logp_t  (+ β · kl_t),   aggregated with ``token_mean``

The paper writes the clip as clip(ρ, 1 − ε_low^IS, 1 + ε_high^IS) with no lower bound in practice
and only ε_high^IS tuned; we expose the upper cap directly as an absolute value ε_max (TRL's CISPO
does the same with ``epsilon_high``, 5.0 recommended). verl clips two-sided around 1 (0.8–1.2 by
default) — a different method in effect (ALGORITHMS.md §11).

The loss *value* is not a surrogate of the return (it contains logp itself); only its gradient,
−w_t Â ∇logp_t, is meaningful. With ρ ≡ 1 (one update per rollout) it is REINFORCE with token-mean
aggregation.

Defaults: ε_max = 5.0, β = 0, ``token_mean``. Metrics: ``clip_frac`` (loss tokens with ρ > ε_max),
``kl`` when β > 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_grpo.objectives.base import (
    Aggregation,
    KLEstimator,
    Objective,
    ObjectiveInputs,
    aggregate,
    kl_penalty,
    token_fraction,
)


class CISPO(Objective):
    def __init__(
        self,
        epsilon_max: float = 5.0,
        beta: float = 0.0,
        aggregation: Aggregation = "token_mean",
        kl_estimator: KLEstimator = "k3",
    ) -> None:
        """
        Args:
            epsilon_max: absolute cap on the importance weight, w = min(ρ, epsilon_max); must be > 0.
            beta: KL coefficient; CISPO uses none (0).
            aggregation: ``token_mean`` (paper); others for ablations.
            kl_estimator: k1, k2 or k3 (only used when beta > 0).
        """
        if epsilon_max <= 0:
            raise ValueError(f"epsilon_max must be > 0 (an absolute cap on the ratio), got {epsilon_max}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.epsilon_max = epsilon_max
        self.beta = beta
        self.aggregation = aggregation
        self.kl_estimator = kl_estimator

    def __call__(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        mask, norm = inputs.mask, inputs.normalizers  # [B, T]
        ratio = torch.exp(inputs.logp.detach() - inputs.old_logp)  # [B, T], no grad
        weight = ratio.clamp(max=self.epsilon_max)  # [B, T]
        adv = inputs.advantages.unsqueeze(1)  # [B, 1]
        per_token = -weight * adv * inputs.logp  # [B, T]
        metrics = {"clip_frac": token_fraction(ratio > self.epsilon_max, mask, norm)}
        if self.beta > 0:
            if inputs.ref_logp is None:
                raise ValueError("CISPO with beta > 0 needs ref_logp; the module must load a reference model")
            kl = kl_penalty(inputs.logp, inputs.ref_logp, self.kl_estimator)  # [B, T]
            per_token = per_token + self.beta * kl
            metrics["kl"] = (kl.detach() * mask).sum() / norm.num_tokens
        return aggregate(per_token, mask, self.aggregation, norm), metrics
