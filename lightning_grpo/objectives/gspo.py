"""GSPO — Group Sequence Policy Optimization (Zheng et al., Qwen, arXiv 2507.18071).

The importance ratio is taken per *sequence*, as the geometric mean of the token ratios
(docs/algorithms.md §7):

    s_i = exp( (1/|o_i|) Σ_t M (logp − logp_old) )
    L_i = −min(s_i Â_i, clip(s_i, 1 − ε_l, 1 + ε_r) Â_i),   loss = (1/n) Σ_i L_i

Implemented in the paper's token-level ("GSPO-token") straight-through form

    s_{i,t} = stopgrad(s_i) · exp(logp_t − stopgrad(logp_t))

whose value is s_i for every token and whose gradient w.r.t. logp_t is s_i; the per-token loss
−min(s_{i,t} Â, clip(s_{i,t}) Â) averaged over the tokens of each completion, then over
completions (``seq_mean_token_mean``), has exactly the value and gradient of the sequence-level
loss above (∇_{logp_t} L_i = −s_i Â_i / |o_i| when unclipped, 0 when clipped). Any aggregation
that weighs the tokens of one completion equally keeps that equality (TRL applies its loss types'
aggregations to the sequence loss broadcast over tokens, which is the same).

With ``kl_ratio_weighted`` the KL term is weighted by the sequence ratio s_i with its gradient
(TRL's ``use_bias_correction_kl`` with ``importance_sampling_level="sequence"``).

Defaults: ε_l = 3e-4, ε_r = 4e-4 (paper), β = 0 (no KL), ``seq_mean_token_mean``, the group
z-score advantage. GSPO's ratio differs from 1 only when a rollout feeds several updates (the paper
splits each rollout batch into 4 mini-batches). TRL and verl's trainers count empty completions in
n; we do not (docs/algorithms.md §11).

Reproduces exactly (tests/reference): TRL 1.16 ``importance_sampling_level="sequence"`` with
``loss_type`` ``"grpo"`` (``seq_mean_token_mean``), ``"bnpo"``/``"dapo"`` (``token_mean``),
``"dr_grpo"`` (``constant_norm``), ``"luspo"`` (``seq_mean_token_sum``); verl 0.9.1
``loss_mode="gspo"`` with any ``loss_agg_mode`` (verl's default ``token-mean`` differs from the
paper's ``seq-mean-token-mean``).

Metrics: ``clip_frac_low`` / ``clip_frac_high``: fraction of loss *tokens* whose sequence is
clipped (s_i < 1 − ε_l with Â < 0, s_i > 1 + ε_r with Â > 0) — the paper reports clipped tokens;
their sum is verl's ``pg_clipfrac``. ``clip_frac_low_seq`` / ``clip_frac_high_seq``: the same as
fractions of *sequences* (TRL's ``clip_ratio/low_mean`` / ``clip_ratio/high_mean`` at sequence
level). ``kl`` when β > 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from typing import Any

from lightning_grpo.objectives.base import (
    Objective,
    ObjectiveInputs,
    aggregate,
    sequence_fraction,
    token_fraction,
)


def _sequence_log_ratio(inputs: ObjectiveInputs) -> Tensor:
    """[B, 1] (1/|o_i|) Σ_t M (logp − logp_old), graph-connected."""
    lengths = inputs.mask.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, 1]
    return ((inputs.logp - inputs.old_logp) * inputs.mask).sum(dim=1, keepdim=True) / lengths


class GSPO(Objective):
    def __init__(self, epsilon_low: float = 3e-4, epsilon_high: float = 4e-4, **shared: Any) -> None:
        """
        Args:
            epsilon_low: lower clip range of the sequence ratio, s ≥ 1 − epsilon_low.
            epsilon_high: upper clip range of the sequence ratio, s ≤ 1 + epsilon_high.
            shared: the options every objective shares (:class:`Objective`; beta 0: GSPO has no KL).
                ``kl_ratio_weighted`` weights kl_t by the sequence ratio s_i, with its gradient
                (TRL, sequence level).
        """
        if not 0 <= epsilon_low < 1:
            raise ValueError(f"epsilon_low must be in [0, 1), got {epsilon_low}")
        if epsilon_high < 0:
            raise ValueError(f"epsilon_high must be >= 0, got {epsilon_high}")
        super().__init__(**shared)
        self.epsilon_low = epsilon_low
        self.epsilon_high = epsilon_high

    def kl_weight(self, inputs: ObjectiveInputs) -> Tensor:
        """The sequence ratio s_i [B, 1], with its gradient (through every token of the sequence)."""
        return torch.exp(_sequence_log_ratio(inputs))

    def policy_loss(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        mask, norm = inputs.mask, inputs.normalizers  # [B, T]
        seq_log_ratio = _sequence_log_ratio(inputs).detach()  # [B, 1]
        # straight-through: value s_i on every token, d/dlogp_t = s_i
        ratio = torch.exp(seq_log_ratio + inputs.logp - inputs.logp.detach())  # [B, T]
        adv = inputs.advantages.unsqueeze(1)  # [B, 1]
        clipped = ratio.clamp(1.0 - self.epsilon_low, 1.0 + self.epsilon_high)  # [B, T]
        per_token = -torch.min(ratio * adv, clipped * adv)  # [B, T]
        seq_ratio = torch.exp(seq_log_ratio)  # [B, 1]
        low = (seq_ratio < 1.0 - self.epsilon_low) & (adv < 0)  # [B, 1]
        high = (seq_ratio > 1.0 + self.epsilon_high) & (adv > 0)  # [B, 1]
        metrics = {
            "clip_frac_low": token_fraction(low, mask, norm),
            "clip_frac_high": token_fraction(high, mask, norm),
            "clip_frac_low_seq": sequence_fraction(low.squeeze(1), mask, norm),
            "clip_frac_high_seq": sequence_fraction(high.squeeze(1), mask, norm),
        }
        return aggregate(per_token, mask, self.aggregation, norm, self.loss_scale_factor), metrics
