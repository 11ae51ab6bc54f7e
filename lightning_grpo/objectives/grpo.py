"""GRPO — Group Relative Policy Optimization (Shao et al., DeepSeekMath, arXiv 2402.03300).

Per loss token, with ρ = exp(logp − logp_old) and the completion's advantage Â (docs/algorithms.md §2):

    L_t = −min(ρ Â, clip(ρ, 1 − ε_low, 1 + ε_high) Â) + β · kl_t

kl_t is the k3 estimator exp(ref − logp) − (ref − logp) − 1 (docs/algorithms.md §1; k1, k2 and
verl's straight-through k1+/k3+ by option). The paper's form is the default;
``kl_ratio_weighted=True`` adds ρ · kl_t instead, ρ *with* its gradient (TRL's
``use_bias_correction_kl``, on by default there): the importance-weighted estimate of
KL(π_θ‖π_ref) under the sampling policy, whose gradient is the KL's.

Optional dual clip (verl's ``clip_ratio_c``, TRL's ``delta``): for Â < 0, L_t = min(−Â · c, L_t),
which bounds the loss (and zeroes the gradient) when ρ > c. Off by default (TRL's GRPO has none;
verl's is on with c = 3). TRL's ``delta`` clamps ρ at δ before the min; for δ > 1 + ε_high that is
the same loss and gradient as c = δ.

Defaults: ε_low = ε_high = 0.2, β = 0.04 (paper), aggregation ``seq_mean_token_mean`` (paper eq. 3:
mean over tokens of each completion, then mean over completions; empty completions are not
counted, unlike TRL/verl's trainers, docs/algorithms.md §11). Every option of the base class
(:class:`~lightning_grpo.objectives.base.Objective`: aggregation incl. ``token_sum`` and
``constant_norm`` with ``loss_scale_factor``, KL estimator, entropy bonus) applies.

Reproduces exactly (tests/reference): TRL 1.16 ``loss_type="grpo"`` (``seq_mean_token_mean``),
``"bnpo"`` (``token_mean``), ``"luspo"`` (``seq_mean_token_sum``), with ``epsilon``/``epsilon_high``,
``beta`` with ``use_bias_correction_kl`` ↔ ``kl_ratio_weighted``, ``delta`` ↔ ``dual_clip``,
``entropy_coef``/adaptive entropy ↔ ``entropy_bonus``; verl 0.9.1 ``policy_loss.loss_mode="vanilla"``
with ``clip_ratio_low``/``clip_ratio_high``/``clip_ratio_c`` ↔ ``dual_clip``, every ``loss_agg_mode``,
``use_kl_loss`` with ``kl_loss_type`` ↔ ``kl_estimator``, ``entropy_coeff`` ↔
``EntropyBonus(coef, aggregation=None)``.

Metrics: ``clip_frac_low`` (ρ < 1 − ε_low with Â < 0; TRL ``clip_ratio/low_mean``),
``clip_frac_high`` (ρ > 1 + ε_high with Â > 0; TRL ``clip_ratio/high_mean``; their sum is TRL's
``clip_ratio/region_mean`` and verl's ``pg_clipfrac``), ``dual_clip_frac`` when dual clip is on (verl
``pg_clipfrac_lower``), ``kl`` (masked token mean of the weighted kl_t) when β > 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from typing import Any

from lightning_grpo.objectives.base import Objective, ObjectiveInputs, aggregate, token_fraction


class GRPO(Objective):
    def __init__(
        self,
        epsilon_low: float = 0.2,
        epsilon_high: float = 0.2,
        dual_clip: float | None = None,
        *,
        beta: float = 0.04,
        **shared: Any,
    ) -> None:
        """
        Args:
            epsilon_low: lower clip range, ρ ≥ 1 − epsilon_low.
            epsilon_high: upper clip range, ρ ≤ 1 + epsilon_high (DAPO's clip-higher raises it).
            dual_clip: the constant c > 1 of dual-clip PPO for Â < 0 (verl uses 3.0); None = off.
            beta: KL coefficient (the paper's 0.04); 0 loads no reference model.
            shared: the options every objective shares (:class:`Objective`): kl_estimator,
                kl_ratio_weighted, aggregation, loss_scale_factor, entropy_bonus.
        """
        if epsilon_low < 0 or epsilon_high < 0:
            raise ValueError(f"clip ranges must be >= 0, got epsilon_low={epsilon_low}, epsilon_high={epsilon_high}")
        if dual_clip is not None and dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
        super().__init__(beta=beta, **shared)
        self.epsilon_low = epsilon_low
        self.epsilon_high = epsilon_high
        self.dual_clip = dual_clip

    def policy_loss(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        mask, norm = inputs.mask, inputs.normalizers  # [B, T]
        ratio = torch.exp(inputs.logp - inputs.old_logp)  # [B, T]
        adv = inputs.advantages.unsqueeze(1)  # [B, 1]
        clipped = ratio.clamp(1.0 - self.epsilon_low, 1.0 + self.epsilon_high)  # [B, T]
        per_token = -torch.min(ratio * adv, clipped * adv)  # [B, T]
        metrics = {
            "clip_frac_low": token_fraction((ratio < 1.0 - self.epsilon_low) & (adv < 0), mask, norm),
            "clip_frac_high": token_fraction((ratio > 1.0 + self.epsilon_high) & (adv > 0), mask, norm),
        }
        if self.dual_clip is not None:
            bound = -adv * self.dual_clip  # [B, 1]
            dual = (adv < 0) & (per_token > bound)  # [B, T]
            per_token = torch.where(adv < 0, torch.min(per_token, bound), per_token)
            metrics["dual_clip_frac"] = token_fraction(dual, mask, norm)
        return aggregate(per_token, mask, self.aggregation, norm, self.loss_scale_factor), metrics
