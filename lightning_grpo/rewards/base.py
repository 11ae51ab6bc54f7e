"""The reward interface and the weighted sum of named reward functions.

A reward function scores a whole rollout batch at once (so a verifier can use a process pool):
``score(batch) -> list[float]``, one float per completion. Subclasses that score one completion at a
time implement ``score_one`` instead. Components are summed with their weights; each is logged by
name (``reward/<name>``). A function that marks itself ``is_correctness`` also defines the run's
accuracy: a completion is correct when it receives ``correct_value``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class RewardBatch:
    """What reward functions see for N completions (N = P·G, group-major order)."""

    prompts: list[str]
    completions: list[str]
    golds: list[str]
    completion_ids: list[str]  # stable ids "<prompt id>/<sample index>", for error messages
    group_ids: list[int]  # [N] index of each completion's group
    lengths: list[int]  # [N] completion lengths in tokens (loss tokens)
    truncated: list[bool]  # [N] no EOS within the budget
    max_new_tokens: int = 0
    metadata: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)  # components scored so far, by name


class RewardFunction:
    """Base class. ``name`` keys the logged component; ``weight`` its share of the total."""

    is_correctness: bool = False
    correct_value: float = 1.0

    def __init__(self, name: str, weight: float = 1.0) -> None:
        self.name = name
        self.weight = weight

    def score(self, batch: RewardBatch) -> list[float]:
        return [
            float(self.score_one(p, c, g, m))
            for p, c, g, m in zip(
                batch.prompts, batch.completions, batch.golds, batch.metadata or [{}] * len(batch.completions)
            )
        ]

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict[str, Any]) -> float:
        raise NotImplementedError(f"{type(self).__name__} implements neither score nor score_one")

    def setup(self) -> None:
        """Prepare expensive state (e.g. worker processes) before the first batch; a no-op by default."""

    def counters(self) -> dict[str, float]:
        """Counters to log (e.g. verifier timeouts); reset by the caller's reading them."""
        return {}

    def extract(self, completion: str, truncated: bool = False) -> str | None:
        """The final answer this function reads from ``completion`` (for maj@k votes and logs), or None."""
        return None


class RewardError(RuntimeError):
    """A reward function raised; names the function and the completion."""


class RewardComposer:
    """Scores a batch with every reward function and sums them with their weights.

    ``on_error='raise'`` turns an exception into a :class:`RewardError` naming the function and the
    first completion it fails on; ``'zero'`` scores that completion 0 for that function and counts it:
    ``last_error_counts[name]`` holds the errors of the latest call only (one rollout's scoring: log
    it per step as ``reward/<name>_errors``), ``error_counts[name]`` the running total since the
    composer was built (``reward/<name>_errors_total``).
    """

    def __init__(self, functions: list[RewardFunction], on_error: Literal["raise", "zero"] = "raise") -> None:
        if not functions:
            raise ValueError("at least one reward function is needed")
        names = [f.name for f in functions]
        if len(set(names)) != len(names):
            raise ValueError(f"reward function names must be unique, got {names}")
        if on_error not in ("raise", "zero"):
            raise ValueError(f"on_error must be 'raise' or 'zero', got {on_error!r}")
        self.functions = functions
        self.on_error = on_error
        self.error_counts = {f.name: 0 for f in functions}  # since construction
        self.last_error_counts = {f.name: 0 for f in functions}  # in the latest __call__

    @property
    def correctness(self) -> RewardFunction | None:
        return next((f for f in self.functions if f.is_correctness), None)

    def __call__(self, batch: RewardBatch) -> tuple[list[float], dict[str, list[float]]]:
        n = len(batch.completions)
        total = [0.0] * n
        self.last_error_counts = {f.name: 0 for f in self.functions}
        for fn in self.functions:
            values = self._score_guarded(fn, batch)
            if len(values) != n:
                raise RewardError(f"reward {fn.name!r} returned {len(values)} scores for {n} completions")
            batch.scores[fn.name] = values
            total = [t + fn.weight * v for t, v in zip(total, values)]
        return total, dict(batch.scores)

    def _score_guarded(self, fn: RewardFunction, batch: RewardBatch) -> list[float]:
        try:
            return [float(v) for v in fn.score(batch)]
        except Exception:
            pass
        # Find the completion that fails: rescore one at a time.
        values = []
        for i in range(len(batch.completions)):
            single = _select(batch, i)
            try:
                values.append(float(fn.score(single)[0]))
            except Exception as err:
                if self.on_error == "raise":
                    raise RewardError(
                        f"reward {fn.name!r} ({type(fn).__name__}) raised on completion "
                        f"{batch.completion_ids[i]!r}: {type(err).__name__}: {err}; "
                        f"completion text: {batch.completions[i][:200]!r}"
                    ) from err
                self.error_counts[fn.name] += 1
                self.last_error_counts[fn.name] += 1
                values.append(0.0)
        return values


def _select(batch: RewardBatch, i: int) -> RewardBatch:
    return RewardBatch(
        prompts=[batch.prompts[i]],
        completions=[batch.completions[i]],
        golds=[batch.golds[i]],
        completion_ids=[batch.completion_ids[i]],
        group_ids=[batch.group_ids[i]],
        lengths=[batch.lengths[i]],
        truncated=[batch.truncated[i]],
        max_new_tokens=batch.max_new_tokens,
        metadata=[batch.metadata[i]] if batch.metadata else [],
        scores={k: [v[i]] for k, v in batch.scores.items()},
    )
