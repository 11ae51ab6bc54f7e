"""CISPO — Clipped IS-weight Policy Optimization (MiniMax-M1, arXiv 2506.13585).

Instead of clipping the token update (which drops the gradient of clipped tokens, often the rare
"reflective" ones), CISPO clips the importance weight and always keeps the REINFORCE gradient
(docs/algorithms.md §7):

    w_t = stopgrad(clip(ρ_t, ε_min, ε_max)),   L_t = −w_t · Â_i · logp_t  (+ β · kl_t)

aggregated with ``token_mean``. The paper writes the clip as clip(ρ, 1 − ε_low^IS, 1 + ε_high^IS)
with no lower bound in practice and only ε_high^IS tuned; we take the bounds as absolute values:
ε_max caps the weight (TRL's CISPO uses ``epsilon_high`` the same way, 5.0 recommended) and the
optional ε_min floors it (None: no floor). verl 0.9.1 clips two-sided around 1,
clip(ρ, 1 − ``clip_ratio_low``, 1 + ``clip_ratio_high``), 0.8–1.2 by default: that is
``CISPO(epsilon_min=1 − clip_ratio_low, epsilon_max=1 + clip_ratio_high)``, a much tighter clip in
effect (docs/algorithms.md §11).

The loss *value* is not a surrogate of the return (it contains logp itself); only its gradient,
−w_t Â ∇logp_t, is meaningful. With ρ ≡ 1 (one update per rollout) it is REINFORCE with token-mean
aggregation.

Defaults: ε_max = 5.0, no ε_min, β = 0, ``token_mean``.

Reproduces exactly (tests/reference): TRL 1.16 ``loss_type="cispo"`` with ``epsilon_high`` ↔
``epsilon_max`` (token-level importance sampling); verl 0.9.1 ``loss_mode="cispo"`` with the
two-sided bounds above and any ``loss_agg_mode``.

Metrics: ``clip_frac`` (loss tokens whose weight is clipped, ρ > ε_max or ρ < ε_min, any Â: verl's
``pg_clipfrac``), ``clip_frac_high`` (ρ > ε_max with Â > 0 only: TRL's ``cispo_clip_ratio``),
``kl`` when β > 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from typing import Any

from lightning_grpo.objectives.base import Aggregation, Objective, ObjectiveInputs, aggregate, token_fraction


class CISPO(Objective):
    def __init__(
        self,
        epsilon_max: float = 5.0,
        epsilon_min: float | None = None,
        *,
        aggregation: Aggregation = "token_mean",
        **shared: Any,
    ) -> None:
        """
        Args:
            epsilon_max: absolute cap on the importance weight, w ≤ epsilon_max; must be > 0.
            epsilon_min: absolute floor on the weight, w ≥ epsilon_min (verl: 1 − clip_ratio_low);
                None = no floor.
            aggregation: ``token_mean`` (paper); others for ablations.
            shared: the other options every objective shares (:class:`Objective`; beta 0: CISPO has no KL).
        """
        if epsilon_max <= 0:
            raise ValueError(f"epsilon_max must be > 0 (an absolute cap on the ratio), got {epsilon_max}")
        if epsilon_min is not None and not 0 <= epsilon_min <= epsilon_max:
            raise ValueError(f"epsilon_min must be in [0, epsilon_max={epsilon_max}] (or None), got {epsilon_min}")
        super().__init__(aggregation=aggregation, **shared)
        self.epsilon_max = epsilon_max
        self.epsilon_min = epsilon_min

    def policy_loss(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        mask, norm = inputs.mask, inputs.normalizers  # [B, T]
        ratio = torch.exp(inputs.logp.detach() - inputs.old_logp)  # [B, T], no grad
        weight = ratio.clamp(min=self.epsilon_min, max=self.epsilon_max)  # [B, T]
        adv = inputs.advantages.unsqueeze(1)  # [B, 1]
        per_token = -weight * adv * inputs.logp  # [B, T]
        clipped = ratio > self.epsilon_max
        if self.epsilon_min is not None:
            clipped = clipped | (ratio < self.epsilon_min)
        metrics = {
            "clip_frac": token_fraction(clipped, mask, norm),
            "clip_frac_high": token_fraction((ratio > self.epsilon_max) & (adv > 0), mask, norm),
        }
        return aggregate(per_token, mask, self.aggregation, norm, self.loss_scale_factor), metrics
