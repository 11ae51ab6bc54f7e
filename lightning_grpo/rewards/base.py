"""The reward interface and the weighted sum of named reward functions.

A reward function scores a whole rollout batch at once (so a verifier can use a process pool):
``score(batch) -> list[float]``, one finite number per completion (anything else stops the run with a
:class:`RewardValueError` naming the function, whatever ``reward_on_error`` says: it is a bug in the
function, not a hard completion). Subclasses that score one completion at a
time implement ``score_one`` instead. Components are summed with their weights; each is logged by
name (``reward/<name>``). A function that marks itself ``is_correctness`` also defines the run's
accuracy: a completion is correct when it receives ``correct_value``.

Every call of a reward function runs under a time limit (``RewardFunction.time_limit_s``, else the
composer's, default 600 s): a function that hangs is treated as one that raised, under the run's
``reward_on_error`` policy, and nothing waits on it longer.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from lightning_grpo.errors import short_repr


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
    time_limit_s: float | None = None  # seconds one ``score`` call may take; None: the composer's limit

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

    def bind(self, functions: list[RewardFunction]) -> None:
        """Called once by :class:`RewardComposer` with all the run's reward functions, in scoring order.

        A function that reads another's verdict (e.g. ``AGPOLengthReward``) finds it here and refuses
        a bad configuration at startup. Default: nothing.
        """

    def counters(self) -> dict[str, float]:
        """Counters to log (e.g. verifier timeouts); reset by the caller's reading them."""
        return {}

    def extract(self, completion: str, truncated: bool = False) -> str | None:
        """The final answer this function reads from ``completion`` (for maj@k votes and logs), or None."""
        return None

    def describe(self) -> str:
        """What this function is, for error messages: its class name (a plain function: its import path)."""
        return type(self).__name__


class CorrectnessReward(RewardFunction):
    """A right-or-wrong reward: ``correct_value`` for a right completion, ``incorrect_value`` otherwise.

    Its verdicts are the run's accuracy (``is_correctness``); subclasses implement ``score_one``.
    """

    is_correctness = True

    def __init__(
        self, name: str = "correct", weight: float = 1.0, correct_value: float = 1.0, incorrect_value: float = 0.0
    ) -> None:
        super().__init__(name=name, weight=weight)
        self.correct_value = correct_value
        self.incorrect_value = incorrect_value


class RewardError(RuntimeError):
    """A reward function raised or ran past its time limit; names the function and the completion."""


class RewardValueError(RewardError):
    """A reward function returned something other than one finite number per completion."""


def checked_scores(fn: RewardFunction, values: Any, batch: RewardBatch) -> list[float]:
    """``values`` as floats, one per completion of ``batch``; a :class:`RewardValueError` naming ``fn`` otherwise."""
    n = len(batch.completions)
    label = f"reward {fn.name!r} ({fn.describe()})"
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__") or not hasattr(values, "__iter__"):
        raise RewardValueError(
            f"{label} returned {type(values).__name__} {short_repr(values)}; a reward returns one number per "
            f"completion, a list of {n} here"
        )
    if len(values) != n:
        raise RewardValueError(f"{label} returned {len(values)} scores for {n} completions")
    scores = []
    for i, value in enumerate(values):
        try:
            if value is None or isinstance(value, (str, bytes)):
                raise TypeError
            number = float(value)
        except (TypeError, ValueError):
            raise RewardValueError(
                f"{label} returned {short_repr(value)} ({type(value).__name__}) for completion "
                f"{batch.completion_ids[i]!r}: not a number"
            ) from None
        if not math.isfinite(number):
            raise RewardValueError(f"{label} returned {number} for completion {batch.completion_ids[i]!r}: not finite")
        scores.append(number)
    return scores


_RAISED = object()  # the batch call raised: rescore one completion at a time


class RewardTimeout(Exception):
    """One ``score`` call ran past its time limit (the call is abandoned, its thread left to finish)."""


DEFAULT_TIME_LIMIT_S = 600.0
MAX_ABANDONED_CALLS = 4  # calls still running past their limit at once, per composer, before it gives up


class RewardComposer:
    """Scores a batch with every reward function and sums them with their weights.

    ``on_error='raise'`` turns an exception into a :class:`RewardError` naming the function and the
    first completion it fails on; ``'zero'`` scores that completion 0 for that function and counts it:
    ``last_error_counts[name]`` holds the errors of the latest call only (one rollout's scoring: log
    it per step as ``reward/<name>_errors``), ``error_counts[name]`` the running total since the
    composer was built (``reward/<name>_errors_total``).

    Each ``score`` call runs in a helper thread under a time limit: the function's ``time_limit_s``,
    else ``time_limit_s`` here (None or 0: no limit, the call runs in the caller's thread). A call
    past its limit is abandoned (Python cannot stop a thread; it finishes or hangs on its own, as a
    daemon) and counts as an error for every completion of that call: ``'raise'`` stops with a
    :class:`RewardError` naming the function and the limit, ``'zero'`` scores them 0 and counts them
    (``timeout_counts[name]``, and in the error counts above). It is not retried one completion at a
    time as an exception is. When :data:`MAX_ABANDONED_CALLS` abandoned calls are still running,
    one more timeout raises whatever the policy, so hung calls cannot pile up.
    """

    def __init__(
        self,
        functions: list[RewardFunction],
        on_error: Literal["raise", "zero"] = "raise",
        time_limit_s: float | None = DEFAULT_TIME_LIMIT_S,
    ) -> None:
        if not functions:
            raise ValueError("at least one reward function is needed")
        names = [f.name for f in functions]
        if len(set(names)) != len(names):
            raise ValueError(f"reward function names must be unique, got {names}")
        if on_error not in ("raise", "zero"):
            raise ValueError(f"on_error must be 'raise' or 'zero', got {on_error!r}")
        if time_limit_s is not None and time_limit_s < 0:
            raise ValueError(f"time_limit_s must be >= 0 or None, got {time_limit_s}")
        self.functions = functions
        self.on_error = on_error
        self.time_limit_s = time_limit_s
        self.timeout_counts = {f.name: 0 for f in functions}  # calls past their limit, since construction
        self._abandoned: list[threading.Thread] = []
        for fn in functions:
            fn.bind(functions)
        self.error_counts = {f.name: 0 for f in functions}  # since construction
        self.last_error_counts = {f.name: 0 for f in functions}  # in the latest __call__

    @property
    def correctness(self) -> RewardFunction | None:
        return next((f for f in self.functions if f.is_correctness), None)

    def __call__(self, batch: RewardBatch) -> tuple[list[float], dict[str, list[float]]]:
        total = [0.0] * len(batch.completions)
        self.last_error_counts = {f.name: 0 for f in self.functions}
        for fn in self.functions:
            values = self._score_guarded(fn, batch)  # [n], checked
            batch.scores[fn.name] = values
            total = [t + fn.weight * v for t, v in zip(total, values)]
        return total, dict(batch.scores)

    def _score_guarded(self, fn: RewardFunction, batch: RewardBatch) -> list[float]:
        try:
            returned = self._call(fn, batch)
        except RewardTimeout as timeout:
            return self._timed_out(fn, batch, timeout)
        except Exception:
            returned = _RAISED
        if returned is not _RAISED:
            return checked_scores(fn, returned, batch)  # a malformed return is a bug in fn: raised, never retried
        # Find the completion that fails: rescore one at a time.
        values = []
        for i in range(len(batch.completions)):
            single = _select(batch, i)
            try:
                values.extend(checked_scores(fn, self._call(fn, single), single))
            except RewardTimeout as timeout:
                values.extend(self._timed_out(fn, single, timeout))
            except RewardValueError:
                raise
            except Exception as err:
                if self.on_error == "raise":
                    raise RewardError(
                        f"reward {fn.name!r} ({fn.describe()}) raised on completion "
                        f"{batch.completion_ids[i]!r}: {type(err).__name__}: {err}; "
                        f"completion text: {batch.completions[i][:200]!r}"
                    ) from err
                self.error_counts[fn.name] += 1
                self.last_error_counts[fn.name] += 1
                values.append(0.0)
        return values

    def time_limit(self, fn: RewardFunction) -> float | None:
        """The seconds one call of ``fn`` may take (None: unlimited)."""
        limit = fn.time_limit_s if fn.time_limit_s is not None else self.time_limit_s
        return limit if limit else None

    def _call(self, fn: RewardFunction, batch: RewardBatch) -> list[float]:
        limit = self.time_limit(fn)
        if limit is None:
            return fn.score(batch)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["values"] = fn.score(batch)
            except BaseException as error:  # handed to the caller's thread
                outcome["error"] = error

        thread = threading.Thread(target=run, name=f"reward-{fn.name}", daemon=True)
        thread.start()
        thread.join(limit)
        if thread.is_alive():
            self._abandoned = [t for t in self._abandoned if t.is_alive()] + [thread]
            raise RewardTimeout(f"no result within its time limit of {limit:g} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["values"]

    def _timed_out(self, fn: RewardFunction, batch: RewardBatch, timeout: RewardTimeout) -> list[float]:
        n = len(batch.completions)
        self.timeout_counts[fn.name] += 1
        still_running = sum(t.is_alive() for t in self._abandoned)
        where = f"a call on {n} completion(s), the first {batch.completion_ids[0]!r}" if n else "a call"
        if self.on_error == "raise" or still_running > MAX_ABANDONED_CALLS:
            why = "" if self.on_error == "raise" else (
                f" ({still_running} timed-out calls are still running, the most allowed is {MAX_ABANDONED_CALLS})"
            )
            raise RewardError(
                f"reward {fn.name!r} ({fn.describe()}) hung: {timeout} on {where}{why}; raise its "
                "time_limit_s if it is just slow"
            ) from timeout
        self.error_counts[fn.name] += n
        self.last_error_counts[fn.name] += n
        return [0.0] * n


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
