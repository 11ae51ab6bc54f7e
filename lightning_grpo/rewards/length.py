"""Length shaping rewards: AGPO's length bonus for correct answers and DAPO's overlong penalty.

**AGPOLengthReward** (arXiv 2503.15952, the authors' code). Within a *mixed* group (its correctness
rewards are not all equal), over the correct completions only::

    r_i = α · (1 − (L_i − L_min) / (L_max − L_min + 1e-6)),   α = 0.1,

with L in tokens (``batch.lengths``) and L_min, L_max taken over the group's correct completions.
Wrong completions and groups that are all correct or all wrong get 0. Correctness is the verdict
of the run's correctness reward (the first one with ``is_correctness`` listed before this one, or
the reward function named ``correctness``): a completion is correct when that function scored it
its own ``correct_value`` (as the run's accuracy counts it), so a correctness reward that pays 2.0
for a right answer is read right. The composer binds the two at startup and refuses a missing
correctness reward or one listed after this reward. An objective recipe adds it to whatever task
it is stacked on through ``data.rollout.shaping``.

**OverlongPenalty** (DAPO, arXiv 2503.14476, overlong reward shaping)::

    R(y) = 0                               if |y| ≤ L_max − L_cache
         = ((L_max − L_cache) − |y|) / L_cache   if L_max − L_cache < |y| ≤ L_max
         = −1                              if |y| > L_max

with |y| = ``batch.lengths`` and L_max = ``max_len`` or, by default, ``batch.max_new_tokens`` (the
task's completion budget). L_cache = ``cache_len`` tokens, or ``cache_fraction`` of L_max (rounded,
at least 1): a fraction sizes the penalty for whatever budget the task has, so an objective recipe
can add it (``data.rollout.shaping``) without knowing the task. Neither given: 0.2 of L_max, the
paper's 4,096 of 20,480 tokens.
"""

from __future__ import annotations

import math
from collections import defaultdict

from lightning_grpo.rewards.base import RewardBatch, RewardFunction

_EPS = 1e-6
PAPER_CACHE_FRACTION = 4096 / 20480  # DAPO: L_cache = 4,096 of L_max = 20,480 tokens


class AGPOLengthReward(RewardFunction):
    """AGPO's bonus for shorter correct answers within mixed groups (see the module docstring)."""

    def __init__(
        self, name: str = "length", weight: float = 1.0, alpha: float = 0.1, correctness: str | None = None
    ) -> None:
        """``correctness``: the name of the reward whose verdicts count; None: the run's correctness reward
        (the first with ``is_correctness`` listed before this one)."""
        super().__init__(name=name, weight=weight)
        self.alpha = alpha
        self.correctness = correctness
        self._judge: RewardFunction | None = None

    def bind(self, functions: list[RewardFunction]) -> None:
        names = [f.name for f in functions]
        if self.correctness is None:
            before = functions[: names.index(self.name)] if self.name in names else functions
            judge = next((f for f in before if f.is_correctness), None)
            if judge is None:
                raise ValueError(
                    f"{self.name!r} (AGPOLengthReward) needs a correctness reward (is_correctness: e.g. ExactInteger, "
                    f"MathReward, FunctionReward with correctness: true) listed before it; the configured rewards are {names}"
                )
            self._judge = judge
            return
        if self.correctness not in names:
            raise ValueError(
                f"{self.name!r} (AGPOLengthReward) needs the correctness reward {self.correctness!r}; "
                f"the configured rewards are {names}"
            )
        if names.index(self.correctness) > names.index(self.name):
            raise ValueError(
                f"{self.name!r} (AGPOLengthReward) reads the verdict of {self.correctness!r}, so "
                f"{self.correctness!r} must be listed before it; the order is {names}"
            )
        self._judge = functions[names.index(self.correctness)]

    def score(self, batch: RewardBatch) -> list[float]:
        if self._judge is None:
            raise RuntimeError(
                f"{self.name!r} (AGPOLengthReward) is not bound to its correctness reward: "
                "score it through RewardComposer (or call bind with the run's reward functions)"
            )
        judge = self._judge.name
        if judge not in batch.scores:
            raise KeyError(
                f"{self.name!r} needs the correctness reward {judge!r} scored first; scored so far: {sorted(batch.scores)}"
            )
        correct_value = self._judge.correct_value
        verdicts = [abs(v - correct_value) <= _EPS for v in batch.scores[judge]]
        groups: dict[int, list[int]] = defaultdict(list)
        for index, group in enumerate(batch.group_ids):
            groups[group].append(index)
        values = [0.0] * len(batch.completions)
        for members in groups.values():
            correct = [i for i in members if verdicts[i]]
            if not correct or len(correct) == len(members):  # all wrong or all correct
                continue
            shortest = min(batch.lengths[i] for i in correct)
            longest = max(batch.lengths[i] for i in correct)
            for i in correct:
                values[i] = self.alpha * (1.0 - (batch.lengths[i] - shortest) / (longest - shortest + _EPS))
        return values


class OverlongPenalty(RewardFunction):
    """DAPO's soft penalty for completions that run into the cache zone at the end of the budget.

    The zone is the last ``cache_len`` tokens, or the last ``cache_fraction`` of the budget (give at
    most one; neither: the paper's fraction, 0.2).
    """

    def __init__(
        self,
        name: str = "overlong",
        weight: float = 1.0,
        cache_len: int | None = None,
        max_len: int | None = None,
        cache_fraction: float | None = None,
    ) -> None:
        super().__init__(name=name, weight=weight)
        if cache_len is not None and cache_fraction is not None:
            raise ValueError(f"give cache_len ({cache_len}) or cache_fraction ({cache_fraction}), not both")
        if cache_len is not None and cache_len <= 0:
            raise ValueError(f"cache_len must be > 0, got {cache_len}")
        if cache_fraction is not None and not 0.0 < cache_fraction <= 1.0:
            raise ValueError(f"cache_fraction must be in (0, 1], got {cache_fraction}")
        if max_len is not None and cache_len is not None and max_len < cache_len:
            raise ValueError(f"max_len ({max_len}) must be >= cache_len ({cache_len})")
        self.cache_len = cache_len
        self.cache_fraction = cache_fraction if cache_len is None and cache_fraction is not None else None
        self.max_len = max_len

    def cache_tokens(self, max_len: int) -> int:
        """L_cache for a budget of ``max_len`` tokens: ``cache_len``, else the fraction of ``max_len`` (>= 1)."""
        if self.cache_len is not None:
            return self.cache_len
        fraction = self.cache_fraction if self.cache_fraction is not None else PAPER_CACHE_FRACTION
        return max(1, math.floor(fraction * max_len + 0.5))

    def score(self, batch: RewardBatch) -> list[float]:
        max_len = self.max_len if self.max_len is not None else batch.max_new_tokens
        cache = self.cache_tokens(max_len)
        if max_len < cache:
            raise ValueError(f"max length {max_len} (batch.max_new_tokens unless max_len is set) < cache_len {cache}")
        safe = max_len - cache
        return [
            0.0 if length <= safe else -1.0 if length > max_len else (safe - length) / cache
            for length in batch.lengths
        ]
