"""Length shaping rewards: AGPO's length bonus for correct answers and DAPO's overlong penalty.

**AGPOLengthReward** (arXiv 2503.15952, the authors' code). Within a *mixed* group (its correctness
rewards are not all equal), over the correct completions only::

    r_i = α · (1 − (L_i − L_min) / (L_max − L_min + 1e-6)),   α = 0.1,

with L in tokens (``batch.lengths``) and L_min, L_max taken over the group's correct completions.
Wrong completions and groups that are all correct or all wrong get 0. Correctness is the verdict
of the reward function named ``correctness`` itself: a completion is correct when that function
scored it its own ``correct_value`` (as the run's accuracy counts it), so a correctness reward
that pays 2.0 for a right answer is read right. The composer binds the two at startup and refuses
a ``correctness`` name that is missing or listed after this reward.

**OverlongPenalty** (DAPO, arXiv 2503.14476, overlong reward shaping)::

    R(y) = 0                               if |y| ≤ L_max − L_cache
         = ((L_max − L_cache) − |y|) / L_cache   if L_max − L_cache < |y| ≤ L_max
         = −1                              if |y| > L_max

with |y| = ``batch.lengths`` and L_max = ``max_len`` or, by default, ``batch.max_new_tokens``.
"""

from __future__ import annotations

from collections import defaultdict

from lightning_grpo.rewards.base import RewardBatch, RewardFunction

_EPS = 1e-6


class AGPOLengthReward(RewardFunction):
    """AGPO's bonus for shorter correct answers within mixed groups (see the module docstring)."""

    def __init__(
        self, name: str = "length", weight: float = 1.0, alpha: float = 0.1, correctness: str = "correct"
    ) -> None:
        super().__init__(name=name, weight=weight)
        self.alpha = alpha
        self.correctness = correctness
        self._judge: RewardFunction | None = None

    def bind(self, functions: list[RewardFunction]) -> None:
        names = [f.name for f in functions]
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
                f"{self.name!r} (AGPOLengthReward) is not bound to its correctness reward {self.correctness!r}: "
                "score it through RewardComposer (or call bind with the run's reward functions)"
            )
        if self.correctness not in batch.scores:
            raise KeyError(
                f"{self.name!r} needs the correctness reward {self.correctness!r} scored first; "
                f"scored so far: {sorted(batch.scores)}"
            )
        correct_value = self._judge.correct_value
        verdicts = [abs(v - correct_value) <= _EPS for v in batch.scores[self.correctness]]
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
    """DAPO's soft penalty for completions that run into the last ``cache_len`` tokens of the budget."""

    def __init__(self, name: str = "overlong", weight: float = 1.0, cache_len: int = 512, max_len: int | None = None) -> None:
        super().__init__(name=name, weight=weight)
        if cache_len <= 0:
            raise ValueError(f"cache_len must be > 0, got {cache_len}")
        if max_len is not None and max_len < cache_len:
            raise ValueError(f"max_len ({max_len}) must be >= cache_len ({cache_len})")
        self.cache_len = cache_len
        self.max_len = max_len

    def score(self, batch: RewardBatch) -> list[float]:
        max_len = self.max_len if self.max_len is not None else batch.max_new_tokens
        if max_len < self.cache_len:
            raise ValueError(f"max length {max_len} (batch.max_new_tokens unless max_len is set) < cache_len {self.cache_len}")
        safe = max_len - self.cache_len
        return [
            0.0 if length <= safe else -1.0 if length > max_len else (safe - length) / self.cache_len
            for length in batch.lengths
        ]
