"""GSPO — Group Sequence Policy Optimization (Zheng et al., Qwen, arXiv 2507.18071).

The importance ratio is taken per *sequence*, as the geometric mean of the token ratios:

    s_i = exp( (1/|o_i|) Σ_t M (logp − logp_old) )
    L_i = −min(s_i Â_i, clip(s_i, 1 − ε_l, 1 + ε_r) Â_i),   loss = (1/n) Σ_i L_i

Implemented in the paper's token-level ("GSPO-token") straight-through form

    s_{i,t} = stopgrad(s_i) · exp(logp_t − stopgrad(logp_t))

whose value is s_i for every token and whose gradient w.r.t. logp_t is s_i; the per-token loss
−min(s_{i,t} Â, clip(s_{i,t}) Â) averaged over the tokens of each completion, then over
completions (``seq_mean_token_mean``), has exactly the value and gradient of the sequence-level
loss above (∇_{logp_t} L_i = −s_i Â_i / |o_i| when unclipped, 0 when clipped).

Defaults: ε_l = 3e-4, ε_r = 4e-4 (paper), β = 0 (no KL; ``beta`` > 0 adds the per-token k3 KL
averaged like the surrogate), the group z-score advantage. GSPO's ratio differs from 1 only when
a rollout feeds several updates (the paper splits each rollout batch into 4 mini-batches).
TRL and verl count empty completions in n; we do not (ALGORITHMS.md §11).

Metrics: ``clip_frac_low`` / ``clip_frac_high``: fraction of loss tokens whose sequence is
clipped (s_i < 1 − ε_l with Â < 0, s_i > 1 + ε_r with Â > 0) — the paper reports clipped *tokens*;
``kl`` when β > 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_grpo.objectives.base import (
    KLEstimator,
    Objective,
    ObjectiveInputs,
    aggregate,
    kl_penalty,
    token_fraction,
)


class GSPO(Objective):
    def __init__(
        self,
        epsilon_low: float = 3e-4,
        epsilon_high: float = 4e-4,
        beta: float = 0.0,
        kl_estimator: KLEstimator = "k3",
    ) -> None:
        """
        Args:
            epsilon_low: lower clip range of the sequence ratio, s ≥ 1 − epsilon_low.
            epsilon_high: upper clip range of the sequence ratio, s ≤ 1 + epsilon_high.
            beta: KL coefficient; GSPO uses none (0).
            kl_estimator: k1, k2 or k3 (only used when beta > 0).
        """
        if not 0 <= epsilon_low < 1:
            raise ValueError(f"epsilon_low must be in [0, 1), got {epsilon_low}")
        if epsilon_high < 0:
            raise ValueError(f"epsilon_high must be >= 0, got {epsilon_high}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.epsilon_low = epsilon_low
        self.epsilon_high = epsilon_high
        self.beta = beta
        self.kl_estimator = kl_estimator

    def __call__(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        mask, norm = inputs.mask, inputs.normalizers  # [B, T]
        lengths = mask.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, 1]
        log_ratio = inputs.logp - inputs.old_logp  # [B, T]
        seq_log_ratio = (log_ratio * mask).sum(dim=1, keepdim=True) / lengths  # [B, 1]
        # straight-through: value s_i on every token, d/dlogp_t = s_i
        ratio = torch.exp(seq_log_ratio.detach() + inputs.logp - inputs.logp.detach())  # [B, T]
        adv = inputs.advantages.unsqueeze(1)  # [B, 1]
        clipped = ratio.clamp(1.0 - self.epsilon_low, 1.0 + self.epsilon_high)  # [B, T]
        per_token = -torch.min(ratio * adv, clipped * adv)  # [B, T]
        seq_ratio = torch.exp(seq_log_ratio.detach())  # [B, 1]
        metrics = {
            "clip_frac_low": token_fraction((seq_ratio < 1.0 - self.epsilon_low) & (adv < 0), mask, norm),
            "clip_frac_high": token_fraction((seq_ratio > 1.0 + self.epsilon_high) & (adv > 0), mask, norm),
        }
        if self.beta > 0:
            if inputs.ref_logp is None:
                raise ValueError("GSPO with beta > 0 needs ref_logp; the module must load a reference model")
            kl = kl_penalty(inputs.logp, inputs.ref_logp, self.kl_estimator)  # [B, T]
            per_token = per_token + self.beta * kl
            metrics["kl"] = (kl.detach() * mask).sum() / norm.num_tokens
        return aggregate(per_token, mask, "seq_mean_token_mean", norm), metrics
