"""Advantage estimators: rewards of a rollout batch, shape [P, G], to one advantage per completion.

An estimator sees rewards (and, when a method needs it, per-completion information such as lengths),
never the model. It returns :class:`Advantages`: the values, a ``keep`` mask (a completion whose
``keep`` is False is excluded from the loss *and* from its normalisers, e.g. AGPO's ``drop`` mode),
and detached metrics. Rewards arrive gathered from all ranks, so every group is whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor


@dataclass
class Advantages:
    values: Tensor  # [P, G]
    keep: Tensor  # [P, G] bool
    metrics: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class AdvantageContext:
    """Optional per-completion information for estimators that need more than rewards."""

    lengths: Tensor | None = None  # [P, G] completion lengths in tokens
    correct: Tensor | None = None  # [P, G] bool correctness, when a correctness reward is configured


class AdvantageEstimator:
    """Base class: ``__call__(rewards [P, G], context) -> Advantages``.

    ``min_group_size``: the smallest G the estimator accepts (2 for a group baseline; 1 for an
    estimator that needs no group). The sampler checks the configured G against it at startup.
    """

    @property
    def min_group_size(self) -> int:
        return 2

    def __call__(self, rewards: Tensor, context: AdvantageContext | None = None) -> Advantages:
        raise NotImplementedError


def zero_variance_groups(rewards: Tensor, atol: float = 0.0) -> Tensor:
    """[P] bool: groups whose rewards are all equal (max − min ≤ atol)."""
    return (rewards.max(dim=1).values - rewards.min(dim=1).values) <= atol


class GroupNormalized(AdvantageEstimator):
    """Group-relative advantage (GRPO, docs/algorithms.md §1): Â_i = (r_i − mean_g r) / (std + eps).

    ``scale``: ``group`` divides by each group's unbiased std (DeepSeekMath), ``batch`` by the
    std over the whole batch, ``none`` only centres (Dr. GRPO, GTPO). ``eps`` = 1e-4 as TRL (verl
    uses 1e-6). A zero-variance group gets Â = 0 for every member.

    ``allow_singleton_groups``: accept G = 1 (``min_group_size`` 1) with verl's convention for a
    group of one: mean 0 and (``scale="group"``) std 1, so Â = r / (1 + eps) — REINFORCE without a
    baseline (``scale="none"``: Â = r; ``"batch"``: Â = r / (std over the batch + eps)). Groups of
    G ≥ 2 are unchanged. Off by default: with G = 1 there is nothing group-relative left.

    Reproduces exactly (tests/reference): verl 0.9.1 ``compute_grpo_outcome_advantage`` with
    ``epsilon=eps`` and ``norm_adv_by_std_in_grpo`` ↔ ``scale="group"`` / ``"none"``, singleton
    groups included.
    """

    def __init__(
        self, scale: Literal["group", "batch", "none"] = "group", eps: float = 1e-4, allow_singleton_groups: bool = False
    ) -> None:
        if scale not in ("group", "batch", "none"):
            raise ValueError(f"unknown scale {scale!r}; expected 'group', 'batch' or 'none'")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.scale = scale
        self.eps = eps
        self.allow_singleton_groups = allow_singleton_groups

    @property
    def min_group_size(self) -> int:
        return 1 if self.allow_singleton_groups else 2

    def __call__(self, rewards: Tensor, context: AdvantageContext | None = None) -> Advantages:
        if rewards.dim() != 2 or rewards.shape[1] < self.min_group_size:
            raise ValueError(
                f"rewards must have shape [P, G] with G >= {self.min_group_size}, got {tuple(rewards.shape)}"
                + ("" if self.allow_singleton_groups else " (allow_singleton_groups=True accepts G = 1)")
            )
        rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))  # float64 stays float64
        if rewards.shape[1] == 1:  # verl's convention for a group of one: mean 0, std 1
            values = rewards / (1.0 + self.eps) if self.scale == "group" else rewards
            if self.scale == "batch":
                values = rewards / (rewards.std() + self.eps)
            keep = torch.ones_like(values, dtype=torch.bool)
            return Advantages(values=values, keep=keep, metrics={"zero_variance_frac": torch.zeros(())})
        centred = rewards - rewards.mean(dim=1, keepdim=True)  # [P, G]
        if self.scale == "group":
            values = centred / (rewards.std(dim=1, keepdim=True) + self.eps)
        elif self.scale == "batch":
            values = centred / (rewards.std() + self.eps)
        else:
            values = centred
        flat = zero_variance_groups(rewards)  # [P]
        values = values.masked_fill(flat.unsqueeze(1), 0.0)
        keep = torch.ones_like(values, dtype=torch.bool)
        return Advantages(values=values, keep=keep, metrics={"zero_variance_frac": flat.float().mean()})


class MeanCentered(GroupNormalized):
    """Mean-centred group advantage: Â_i = r_i − mean_g r, no std (Dr. GRPO, GTPO; docs/algorithms.md §1, §5, §7).

    Dr. GRPO drops the std because dividing by it up-weights prompts that are nearly always solved
    or nearly always failed. ``GroupNormalized(scale="none")`` under its own name, for recipes
    (verl's ``norm_adv_by_std_in_grpo=False``; TRL's ``scale_rewards="none"``).
    """

    def __init__(self, allow_singleton_groups: bool = False) -> None:
        super().__init__(scale="none", allow_singleton_groups=allow_singleton_groups)


class AGPOAdvantage(AdvantageEstimator):
    """AGPO's zero-variance-aware group advantage (arXiv 2503.15952, docs/algorithms.md §4).

    GRPO gives every member of a group whose rewards are all equal Â = 0, so such prompts teach
    nothing. AGPO treats them by ``zero_variance``:

    - ``zero``: Â = 0 (GRPO);
    - ``drop``: the group is excluded from the loss and its normalisers (``keep`` False; the
      authors' later code);
    - ``pm_one`` (default, paper v1): Â = +1 for every member if the common reward equals ``r_max``
      (all correct), −1 if it equals ``r_min`` (all wrong), 0 otherwise.

    A group is zero-variance when max − min ≤ ``atol``. When ``context.correct`` is given the test
    (and the all-correct / all-wrong decision) uses the correctness alone, not the total reward
    (which may carry format or length terms): all correct → +1, all wrong → −1. Without it, the
    rewards themselves are tested and compared with r_max / r_min (within ``atol``).
    Mixed groups get the z-score (r − mean) / (std + eps), unbiased std, eps = 1e-4 as
    :class:`GroupNormalized`.

    AGPO's second part, the length reward, is a reward function (``rewards.AGPOLengthReward``) added
    to the correctness reward before this estimator runs; ``configs/objectives/agpo.yaml`` sets both.

    Metrics: ``zero_variance_frac``, ``pm_one_frac`` (groups set to ±1), ``plus_one_frac``,
    ``minus_one_frac``, ``dropped_frac`` (fractions of the P groups); ``pm_one_groups`` and
    ``dropped_groups`` (counts).
    """

    def __init__(
        self,
        zero_variance: Literal["zero", "drop", "pm_one"] = "pm_one",
        atol: float = 1e-6,
        r_max: float = 1.0,
        r_min: float = 0.0,
        eps: float = 1e-4,
    ) -> None:
        """
        Args:
            zero_variance: what a group with all-equal rewards gets: ``zero``, ``drop`` or ``pm_one``.
            atol: a group is zero-variance when max − min ≤ atol.
            r_max: the reward of an all-correct group (→ +1 in ``pm_one``).
            r_min: the reward of an all-wrong group (→ −1 in ``pm_one``).
            eps: added to the group std of mixed groups.
        """
        if zero_variance not in ("zero", "drop", "pm_one"):
            raise ValueError(f"unknown zero_variance mode {zero_variance!r}; expected 'zero', 'drop' or 'pm_one'")
        if atol < 0:
            raise ValueError(f"atol must be >= 0, got {atol}")
        if r_max <= r_min:
            raise ValueError(f"r_max must be > r_min, got r_max={r_max}, r_min={r_min}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.zero_variance = zero_variance
        self.atol = atol
        self.r_max = r_max
        self.r_min = r_min
        self.eps = eps

    def __call__(self, rewards: Tensor, context: AdvantageContext | None = None) -> Advantages:
        if rewards.dim() != 2 or rewards.shape[1] < 2:
            raise ValueError(f"rewards must have shape [P, G] with G >= 2, got {tuple(rewards.shape)}")
        rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))  # float64 stays float64
        correct = context.correct if context is not None else None
        if correct is not None:
            if correct.shape != rewards.shape:
                raise ValueError(f"context.correct has shape {tuple(correct.shape)}, rewards {tuple(rewards.shape)}")
            correct = correct.to(rewards.device).bool()
            flat = correct.all(dim=1) | (~correct).all(dim=1)  # [P]
            all_good = correct.all(dim=1)  # [P]
            all_bad = (~correct).all(dim=1)  # [P]
        else:
            flat = zero_variance_groups(rewards, self.atol)  # [P]
            common = rewards[:, 0]  # [P]
            all_good = flat & ((common - self.r_max).abs() <= self.atol)
            all_bad = flat & ((common - self.r_min).abs() <= self.atol)

        centred = rewards - rewards.mean(dim=1, keepdim=True)  # [P, G]
        values = centred / (rewards.std(dim=1, keepdim=True) + self.eps)  # [P, G]
        values = values.masked_fill(flat.unsqueeze(1), 0.0)
        keep = torch.ones_like(values, dtype=torch.bool)
        plus = flat & all_good  # [P]
        minus = flat & all_bad & ~all_good  # [P]
        dropped = torch.zeros_like(flat)
        if self.zero_variance == "pm_one":
            values = torch.where(plus.unsqueeze(1), torch.ones_like(values), values)
            values = torch.where(minus.unsqueeze(1), -torch.ones_like(values), values)
        elif self.zero_variance == "drop":
            dropped = flat
            keep = keep & ~flat.unsqueeze(1)
        if self.zero_variance != "pm_one":
            plus = minus = torch.zeros_like(flat)
        metrics = {
            "zero_variance_frac": flat.float().mean(),
            "pm_one_frac": (plus | minus).float().mean(),
            "plus_one_frac": plus.float().mean(),
            "minus_one_frac": minus.float().mean(),
            "dropped_frac": dropped.float().mean(),
            "pm_one_groups": (plus | minus).sum().float(),
            "dropped_groups": dropped.sum().float(),
        }
        return Advantages(values=values, keep=keep, metrics=metrics)
