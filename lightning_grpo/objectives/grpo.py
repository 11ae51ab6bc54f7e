"""GRPO — Group Relative Policy Optimization (Shao et al., DeepSeekMath, arXiv 2402.03300).

Per loss token, with ρ = exp(logp − logp_old) and the completion's advantage Â:

    L_t = −min(ρ Â, clip(ρ, 1 − ε_low, 1 + ε_high) Â) + β · kl_t

kl_t is the k3 estimator exp(ref − logp) − (ref − logp) − 1 (ALGORITHMS.md §1). The paper's
form is the default; ``kl_ratio_weighted=True`` multiplies kl_t by stopgrad(ρ) as TRL 1.16 does by
default (``use_bias_correction_kl``).

Optional dual clip (verl's ``clip_ratio_c``): for Â < 0, L_t = min(−Â · c, L_t), which bounds the
loss (and zeroes the gradient) when ρ > c. Off by default (TRL's GRPO has none; verl's is on).

Defaults: ε_low = ε_high = 0.2, β = 0.04 (paper), aggregation ``seq_mean_token_mean`` (paper eq. 3:
mean over tokens of each completion, then mean over completions; empty completions are not
counted, unlike TRL/verl, ALGORITHMS.md §11).

Metrics: ``clip_frac_low`` (ρ < 1 − ε_low with Â < 0), ``clip_frac_high`` (ρ > 1 + ε_high with
Â > 0), ``dual_clip_frac`` when dual clip is on, ``kl`` (masked token mean) when β > 0.
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


class GRPO(Objective):
    def __init__(
        self,
        epsilon_low: float = 0.2,
        epsilon_high: float = 0.2,
        beta: float = 0.04,
        aggregation: Aggregation = "seq_mean_token_mean",
        dual_clip: float | None = None,
        kl_estimator: KLEstimator = "k3",
        kl_ratio_weighted: bool = False,
    ) -> None:
        """
        Args:
            epsilon_low: lower clip range, ρ ≥ 1 − epsilon_low.
            epsilon_high: upper clip range, ρ ≤ 1 + epsilon_high (DAPO's clip-higher raises it).
            beta: KL coefficient; 0 loads no reference model.
            aggregation: how per-token losses become one loss (ALGORITHMS.md §1).
            dual_clip: the constant c > 1 of dual-clip PPO for Â < 0 (verl uses 3.0); None = off.
            kl_estimator: k1, k2 or k3.
            kl_ratio_weighted: weight kl_t by stopgrad(ρ) (TRL's default), not the paper's form.
        """
        if epsilon_low < 0 or epsilon_high < 0:
            raise ValueError(f"clip ranges must be >= 0, got epsilon_low={epsilon_low}, epsilon_high={epsilon_high}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if dual_clip is not None and dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
        self.epsilon_low = epsilon_low
        self.epsilon_high = epsilon_high
        self.beta = beta
        self.aggregation = aggregation
        self.dual_clip = dual_clip
        self.kl_estimator = kl_estimator
        self.kl_ratio_weighted = kl_ratio_weighted

    def __call__(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
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
        if self.beta > 0:
            if inputs.ref_logp is None:
                raise ValueError("GRPO with beta > 0 needs ref_logp; the module must load a reference model")
            kl = kl_penalty(inputs.logp, inputs.ref_logp, self.kl_estimator)  # [B, T]
            if self.kl_ratio_weighted:
                kl = kl * ratio.detach()
            per_token = per_token + self.beta * kl
            metrics["kl"] = ((kl.detach() * mask).sum() / norm.num_tokens)
        loss = aggregate(per_token, mask, self.aggregation, norm)
        return loss, metrics
