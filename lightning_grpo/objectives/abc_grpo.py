"""ABC-GRPO — Adaptive-Boundary-Clipping GRPO (arXiv 2601.03895).

The ratio ρ = exp(logp − logp_old) is clipped *unconditionally* (no ``min`` with the unclipped
term), with bounds that depend on the sign of the completion's advantage Â:

    Â > 0:  ρ̃ = clip(ρ, 1 − ε2, 1 + ε1)
    Â ≤ 0:  ρ̃ = clip(ρ, 1 − ε4, 1 + ε3)
    L_t   = −ρ̃ · Â  (+ β · kl_t when β > 0)

so the gradient is zero outside the bounds in all four quadrants. PPO/GRPO, by contrast, never
clips Q2 (Â > 0, ρ < 1: the "blind spot") and leaves Q4 (Â < 0, ρ > 1) unbounded. "Adaptive"
refers only to the sign dependence: no running statistic, no schedule (docs/algorithms.md §3).

Defaults: ε1 = ε2 = ε3 = ε4 = 0.2, β = 0 (no reference model), aggregation
``seq_mean_token_mean`` (paper eq. 6). The authors' runs (a TRL fork) aggregated with the global
``token_mean``; pass ``aggregation="token_mean"`` to reproduce them. Clipping only matters
off-policy: with one update per rollout (ρ ≡ 1) ABC-GRPO *is* GRPO, so use several updates per
rollout (the authors used 4 mini-batches per rollout batch).

Oracles (tested): with ρ ≡ 1 it equals GRPO in value and gradient; for Â < 0 it equals dual-clip
GRPO with c = 1 + ε3 and ε_low = ε4.

No TRL or verl configuration reproduces it (the authors' TRL fork is not a release). The shared
options of the base class (KL estimator and ratio-weighted KL, aggregation, entropy bonus) apply.

Metrics: ``clip_frac_q1`` (Â > 0, ρ > 1 + ε1), ``clip_frac_q2`` (Â > 0, ρ < 1 − ε2),
``clip_frac_q3`` (Â < 0, ρ < 1 − ε4), ``clip_frac_q4`` (Â < 0, ρ > 1 + ε3) as fractions of all loss
tokens; ``kl`` when β > 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from typing import Any

from lightning_grpo.objectives.base import Objective, ObjectiveInputs, aggregate, token_fraction


class ABCGRPO(Objective):
    def __init__(
        self,
        epsilon_1: float = 0.2,
        epsilon_2: float = 0.2,
        epsilon_3: float = 0.2,
        epsilon_4: float = 0.2,
        **shared: Any,
    ) -> None:
        """
        Args:
            epsilon_1: upper bound for Â > 0, ρ ≤ 1 + epsilon_1 (Q1).
            epsilon_2: lower bound for Â > 0, ρ ≥ 1 − epsilon_2 (Q2, PPO's blind spot).
            epsilon_3: upper bound for Â ≤ 0, ρ ≤ 1 + epsilon_3 (Q4, unbounded in PPO).
            epsilon_4: lower bound for Â ≤ 0, ρ ≥ 1 − epsilon_4 (Q3).
            shared: the options every objective shares (:class:`Objective`; beta 0 by default).
        """
        for name, eps in (("epsilon_1", epsilon_1), ("epsilon_2", epsilon_2), ("epsilon_3", epsilon_3)):
            if eps < 0:
                raise ValueError(f"{name} must be >= 0, got {eps}")
        if epsilon_2 >= 1:
            raise ValueError(f"epsilon_2 must be in [0, 1) (lower bound 1 - epsilon_2 > 0), got {epsilon_2}")
        if not 0 <= epsilon_4 < 1:
            raise ValueError(f"epsilon_4 must be in [0, 1) (lower bound 1 - epsilon_4 > 0), got {epsilon_4}")
        super().__init__(**shared)
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.epsilon_3 = epsilon_3
        self.epsilon_4 = epsilon_4

    def policy_loss(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        mask, norm = inputs.mask, inputs.normalizers  # [B, T]
        ratio = torch.exp(inputs.logp - inputs.old_logp)  # [B, T]
        adv = inputs.advantages.unsqueeze(1)  # [B, 1]
        positive = adv > 0  # [B, 1]
        clipped = torch.where(
            positive,
            ratio.clamp(1.0 - self.epsilon_2, 1.0 + self.epsilon_1),
            ratio.clamp(1.0 - self.epsilon_4, 1.0 + self.epsilon_3),
        )  # [B, T]
        per_token = -clipped * adv  # [B, T]
        negative = adv < 0  # [B, 1]
        metrics = {
            "clip_frac_q1": token_fraction(positive & (ratio > 1.0 + self.epsilon_1), mask, norm),
            "clip_frac_q2": token_fraction(positive & (ratio < 1.0 - self.epsilon_2), mask, norm),
            "clip_frac_q3": token_fraction(negative & (ratio < 1.0 - self.epsilon_4), mask, norm),
            "clip_frac_q4": token_fraction(negative & (ratio > 1.0 + self.epsilon_3), mask, norm),
        }
        return aggregate(per_token, mask, self.aggregation, norm, self.loss_scale_factor), metrics
