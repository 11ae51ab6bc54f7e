"""GMPO — Geometric-Mean Policy Optimization (Zhao et al., arXiv 2507.20673).

GRPO maximises the arithmetic mean over tokens of ρ_t Â; GMPO the geometric mean, which is far
less sensitive to outlier ratios (docs/algorithms.md §7). Clipping is per token, in log space,
one-sided by the sign of the advantage (PPO's trust region) and applied *before* the mean:

    ℓ_t  = log ρ_t = logp − logp_old
    ℓ̃_t = min(ℓ_t, clip(ℓ_t, −ε_low, ε_high))   if Â_i > 0   (caps growth)
    ℓ̃_t = max(ℓ_t, clip(ℓ_t, −ε_low, ε_high))   if Â_i < 0   (caps shrinkage)
    L_i  = −exp( (1/|o_i|) Σ_t M ℓ̃_t ) · Â_i,   loss = (1/n) Σ_i L_i

i.e. the paper's (Π_t min(ρ_t^{sgn Â}, clip(ρ_t, e^{−ε_low}, e^{ε_high})^{sgn Â}))^{sgn Â/|o_i|} · Â_i.
The gradient w.r.t. logp_t is −exp(mean ℓ̃) Â_i / |o_i| for unclipped tokens and 0 for clipped ones.

Defaults: ε_low = ε_high = 0.4 (ratios in (e^{−0.4}, e^{0.4}), the paper's wider range), β = 0,
the group z-score advantage, mean over completions. ``beta`` > 0 adds the per-token KL, averaged
over each completion's tokens and then over completions (``seq_mean_token_mean``; with
``kl_ratio_weighted`` weighted by the token ratio ρ_t with its gradient). The shared ``aggregation``
(and ``loss_scale_factor``) apply to the KL and entropy terms only: the policy term is always the
per-sequence geometric mean above. Empty completions are not counted in n.

Reproduces exactly (tests/reference): verl 0.9.1 ``loss_mode="geo_mean"`` (the authors' code; it
ignores ``loss_agg_mode`` and averages over all rows, so n counts empty rows there) with
``clip_ratio_low``/``clip_ratio_high`` ↔ ``epsilon_low``/``epsilon_high``. TRL has no GMPO.

Metrics: ``clip_frac`` (loss tokens whose log-ratio is clipped: on the side that binds for their
advantage's sign), ``out_of_range_frac_pos`` / ``out_of_range_frac_neg`` (loss tokens whose
log-ratio lies outside [−ε_low, ε_high] on either side, with Â > 0 / Â < 0: verl's ``pg_clipfrac``
/ ``pg_clipfrac_lower``), ``kl`` when β > 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from typing import Any

from lightning_grpo.objectives.base import Objective, ObjectiveInputs, token_fraction


class GMPO(Objective):
    def __init__(self, epsilon_low: float = 0.4, epsilon_high: float = 0.4, **shared: Any) -> None:
        """
        Args:
            epsilon_low: log-space lower clip, log ρ ≥ −epsilon_low (applies when Â < 0).
            epsilon_high: log-space upper clip, log ρ ≤ epsilon_high (applies when Â > 0).
            shared: the options every objective shares (:class:`Objective`; beta 0: GMPO has no KL).
                The policy term is always the per-sequence geometric mean; ``aggregation`` (and
                ``loss_scale_factor``) apply to the KL and entropy terms only.
        """
        if epsilon_low < 0 or epsilon_high < 0:
            raise ValueError(
                f"log-space clip ranges must be >= 0, got epsilon_low={epsilon_low}, epsilon_high={epsilon_high}"
            )
        super().__init__(**shared)
        self.epsilon_low = epsilon_low
        self.epsilon_high = epsilon_high

    def policy_loss(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        mask, norm = inputs.mask, inputs.normalizers  # [B, T]
        log_ratio = inputs.logp - inputs.old_logp  # [B, T]
        adv = inputs.advantages.unsqueeze(1)  # [B, 1]
        bounded = log_ratio.clamp(-self.epsilon_low, self.epsilon_high)  # [B, T]
        clipped = torch.where(adv > 0, torch.min(log_ratio, bounded), torch.max(log_ratio, bounded))  # [B, T]
        lengths = mask.sum(dim=1).clamp(min=1.0)  # [B]
        seq_ratio = torch.exp((clipped * mask).sum(dim=1) / lengths)  # [B]
        nonempty = (mask.sum(dim=1) > 0).to(seq_ratio.dtype)  # [B]
        loss = -(seq_ratio * inputs.advantages * nonempty).sum() / norm.num_sequences
        was_clipped = ((adv > 0) & (log_ratio > self.epsilon_high)) | ((adv < 0) & (log_ratio < -self.epsilon_low))
        outside = (log_ratio > self.epsilon_high) | (log_ratio < -self.epsilon_low)  # [B, T]
        metrics = {
            "clip_frac": token_fraction(was_clipped, mask, norm),
            "out_of_range_frac_pos": token_fraction(outside & (adv > 0), mask, norm),
            "out_of_range_frac_neg": token_fraction(outside & (adv < 0), mask, norm),
        }
        return loss, metrics
