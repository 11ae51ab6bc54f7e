"""GMPO — Geometric-Mean Policy Optimization (Zhao et al., arXiv 2507.20673).

GRPO maximises the arithmetic mean over tokens of ρ_t Â; GMPO the geometric mean, which is far
less sensitive to outlier ratios. Clipping is per token, in log space, one-sided by the sign of
the advantage (PPO's trust region) and applied *before* the mean:

    ℓ_t  = log ρ_t = logp − logp_old
    ℓ̃_t = min(ℓ_t, clip(ℓ_t, −ε_low, ε_high))   if Â_i > 0   (caps growth)
    ℓ̃_t = max(ℓ_t, clip(ℓ_t, −ε_low, ε_high))   if Â_i < 0   (caps shrinkage)
    L_i  = −exp( (1/|o_i|) Σ_t M ℓ̃_t ) · Â_i,   loss = (1/n) Σ_i L_i

i.e. the paper's (Π_t min(ρ_t^{sgn Â}, clip(ρ_t, e^{−ε_low}, e^{ε_high})^{sgn Â}))^{sgn Â/|o_i|} · Â_i.
The gradient w.r.t. logp_t is −exp(mean ℓ̃) Â_i / |o_i| for unclipped tokens and 0 for clipped ones.

Defaults: ε_low = ε_high = 0.4 (ratios in (e^{−0.4}, e^{0.4}), the paper's wider range), β = 0,
the group z-score advantage, mean over completions. The authors' code (verl's ``geo_mean`` policy
loss) computes the same clipped mean; ``beta`` > 0 adds the per-token k3 KL, averaged over each
completion's tokens and then over completions. Empty completions are not counted in n.

Metrics: ``clip_frac`` (loss tokens whose log-ratio is clipped), ``kl`` when β > 0.
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


class GMPO(Objective):
    def __init__(
        self,
        epsilon_low: float = 0.4,
        epsilon_high: float = 0.4,
        beta: float = 0.0,
        kl_estimator: KLEstimator = "k3",
    ) -> None:
        """
        Args:
            epsilon_low: log-space lower clip, log ρ ≥ −epsilon_low (applies when Â < 0).
            epsilon_high: log-space upper clip, log ρ ≤ epsilon_high (applies when Â > 0).
            beta: KL coefficient; GMPO uses none (0).
            kl_estimator: k1, k2 or k3 (only used when beta > 0).
        """
        if epsilon_low < 0 or epsilon_high < 0:
            raise ValueError(
                f"log-space clip ranges must be >= 0, got epsilon_low={epsilon_low}, epsilon_high={epsilon_high}"
            )
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.epsilon_low = epsilon_low
        self.epsilon_high = epsilon_high
        self.beta = beta
        self.kl_estimator = kl_estimator

    def __call__(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
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
        metrics = {"clip_frac": token_fraction(was_clipped, mask, norm)}
        if self.beta > 0:
            if inputs.ref_logp is None:
                raise ValueError("GMPO with beta > 0 needs ref_logp; the module must load a reference model")
            kl = kl_penalty(inputs.logp, inputs.ref_logp, self.kl_estimator)  # [B, T]
            loss = loss + self.beta * aggregate(kl, mask, "seq_mean_token_mean", norm)
            metrics["kl"] = (kl.detach() * mask).sum() / norm.num_tokens
        return loss, metrics
