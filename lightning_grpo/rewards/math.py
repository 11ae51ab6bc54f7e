"""Math correctness reward: the verifier run in killable worker processes with a hard timeout.

``MathReward`` scores a whole batch through a :class:`VerifierPool`: ``num_workers`` processes, each
answering one (completion, gold) check at a time. A check that runs past ``timeout_s`` has its
worker killed (SIGKILL: this stops C-level bignum work that ``signal.alarm`` cannot, and works
whichever thread calls) and replaced; it scores ``incorrect_value`` and counts as a timeout. A
worker that dies, or a check that reports an internal error, scores ``incorrect_value`` and counts
as an error. Both counts are logged (``reward/verifier_timeouts``, ``reward/verifier_errors``)
and each event is logged as a warning with the completion's id.

Workers start from a ``forkserver`` (a clean process, so it inherits no torch threads, with the
verifier preloaded so that a replacement starts in milliseconds), or ``spawn`` where forkserver is
unavailable. :meth:`MathReward.setup` starts them (the data module calls it in its own ``setup``, so
the first batch does not pay the seconds a cold start takes); they start lazily on the first batch
if ``setup`` was never called. The pool is shut down by :meth:`MathReward.close`, or at exit.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import re
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

from lightning_grpo.rewards.base import RewardBatch, RewardFunction
from lightning_grpo.rewards.extraction import extract_answer
from lightning_grpo.rewards.normalize import normalize_answer
from lightning_grpo.rewards.verifier import VerifyPolicy, check

_NUMBER = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\.?$")  # 54, -3.5, 1,234 (normalized): a numeral
logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120.0
MAX_CHUNK = 16  # tasks sent to a worker at once
Task = tuple[Any, ...]


Backend = Literal["lightning_grpo", "math_verify"]
BACKENDS = ("lightning_grpo", "math_verify")
MATH_VERIFY_MISSING = (
    "MathReward(backend='math_verify') needs the math-verify package, which is not installed: "
    "pip install math-verify (or pip install 'lightning-grpo[math_verify]')"
)


def check_task(completion: str, gold: str, policy: VerifyPolicy, truncated: bool) -> tuple[bool, str | None]:
    """The default checker run in the workers: (correct, internal error or None)."""
    verdict = check(completion, gold, policy=policy, truncated=truncated)
    return verdict.correct, verdict.error


def math_verify_task(completion: str, gold: str, policy: VerifyPolicy, truncated: bool) -> tuple[bool, str | None]:
    """Math-Verify's documented usage, ``verify(parse(gold), parse(completion))``, run in the workers.

    A gold without ``$`` or ``\\boxed`` is wrapped in ``$…$`` (Math-Verify reads math from delimiters).
    Math-Verify has no notion of ``policy`` or ``truncated``: both are ignored. Imported here, lazily,
    so that the package never depends on it."""
    import logging

    try:
        from math_verify import parse, verify
    except ImportError as err:
        raise ImportError(MATH_VERIFY_MISSING) from err
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every parse timeout in full
    gold_text = gold if "\\boxed" in gold or "$" in gold else f"${gold}$"
    return bool(verify(parse(gold_text), parse(completion))), None


def _require_math_verify() -> None:
    """Fail in the parent, before any worker starts, when math-verify cannot be imported."""
    if importlib.util.find_spec("math_verify") is None:
        raise ImportError(MATH_VERIFY_MISSING)


@dataclass(frozen=True)
class Outcome:
    """One task's result. ``status``: ``ok``, ``timeout`` or ``error`` (the worker died or raised)."""

    status: Literal["ok", "timeout", "error"]
    value: Any = None
    seconds: float = 0.0
    message: str | None = None


def _serve(conn: Connection, function: Callable[..., Any]) -> None:
    """Worker loop: announce readiness, then answer chunks of tasks until told to stop (``None``).
    Each task's result is sent as soon as it is done, so the parent can time every task on its own."""
    conn.send(("ready", None, 0.0))
    while True:
        chunk = conn.recv()
        if chunk is None:
            return
        for task in chunk:
            start = time.perf_counter()
            try:
                conn.send(("ok", function(*task), time.perf_counter() - start))
            except Exception as err:  # reported to the parent as an error outcome
                conn.send(("error", f"{type(err).__name__}: {err}"[:500], time.perf_counter() - start))


class _Worker:
    def __init__(self, context: Any, function: Callable[..., Any]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, function), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.queue: deque[int] = deque()  # indices of the tasks sent and not answered, in order
        self.deadline = 0.0  # when the task at the head of the queue times out
        self.head_start = 0.0  # when the task at the head of the queue started (at the latest)

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


def _shutdown(workers: list[_Worker]) -> None:
    for worker in workers:
        try:
            worker.conn.send(None)
        except OSError:
            pass
    for worker in workers:
        worker.process.join(1)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(5)
        worker.conn.close()
    workers.clear()


class VerifierPool:
    """``num_workers`` processes running ``function(*task)`` with a hard per-task timeout.

    ``function`` must be a module-level (picklable) function. :meth:`map` returns one
    :class:`Outcome` per task, in order. Not thread-safe: one ``map`` at a time.
    """

    def __init__(
        self, function: Callable[..., Any], num_workers: int = 2, timeout_s: float = 2.0, start_method: str | None = None
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.function = function
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        methods = multiprocessing.get_all_start_methods()
        self.start_method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
        self._workers: list[_Worker] = []
        self._finalizer: weakref.finalize | None = None
        self.restarts = 0  # workers replaced because they died, timed out or could not be reached

    def _context(self) -> Any:
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            preload = [self.function.__module__, "lightning_grpo.rewards.verifier"]
            if self.function.__name__ == "math_verify_task":
                preload.append("math_verify")
            context.set_forkserver_preload(preload)
        return context

    def start(self, block: bool = True) -> None:
        """Start the workers (idempotent); with ``block``, return once every worker is ready."""
        if not self._workers:
            context = self._context()
            self._workers.extend(_Worker(context, self.function) for _ in range(self.num_workers))
            self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while block and not all(w.ready for w in self._workers):
            waiting = [w for w in self._workers if not w.ready]
            ready = wait([w.conn for w in waiting], timeout=max(0.0, deadline - time.monotonic()))
            if not ready and time.monotonic() > deadline:
                raise RuntimeError(f"no verifier worker started within {STARTUP_TIMEOUT_S} s")
            for worker in [w for w in waiting if w.conn in ready]:
                self._receive(worker, [], deque())

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self.restarts += 1
        self._workers[self._workers.index(worker)] = _Worker(self._context(), self.function)

    def map(self, tasks: list[Task]) -> list[Outcome]:
        """Run every task; a task past ``timeout_s`` (from when its worker starts it) times out.

        Tasks go to the workers in chunks (so a worker never waits for the parent between tasks);
        results come back one by one, and the next task's clock starts when the previous result
        arrives. A worker whose task times out or that dies is replaced, and the rest of its chunk
        is run again by another worker."""
        self.start(block=False)
        results: list[Outcome | None] = [None] * len(tasks)
        pending = deque(range(len(tasks)))
        while pending or any(w.queue for w in self._workers):
            for worker in list(self._workers):
                if worker.ready and not worker.queue and pending:
                    if not worker.process.is_alive():  # killed while idle: replace it, lose nothing
                        self._replace(worker)
                        continue
                    size = max(1, min(MAX_CHUNK, len(pending) // (2 * len(self._workers))))
                    chunk = [pending.popleft() for _ in range(min(size, len(pending)))]
                    try:
                        worker.conn.send([tasks[i] for i in chunk])
                    except OSError:  # it died since the check: the chunk goes back, untouched
                        pending.extendleft(reversed(chunk))
                        self._replace(worker)
                        continue
                    worker.queue.extend(chunk)
                    worker.head_start = time.monotonic()
                    worker.deadline = worker.head_start + self.timeout_s
            deadlines = [w.deadline for w in self._workers if w.queue]
            startup_deadline = min(w.started for w in self._workers) + STARTUP_TIMEOUT_S
            wait_s = (min(deadlines) if deadlines else startup_deadline) - time.monotonic()
            ready = wait([w.conn for w in self._workers], timeout=max(0.0, wait_s))
            for worker in [w for w in self._workers if w.conn in ready]:
                self._receive(worker, results, pending)
                while worker in self._workers and worker.queue and worker.conn.poll(0):  # every result sent so far
                    self._receive(worker, results, pending)
            now = time.monotonic()
            for worker in [w for w in self._workers if w.queue and w.deadline <= now]:
                index = worker.queue.popleft()
                results[index] = Outcome("timeout", seconds=now - worker.head_start, message=f"over {self.timeout_s} s")
                pending.extendleft(reversed(worker.queue))
                self._replace(worker)
            if not any(w.ready for w in self._workers) and now > max(w.started for w in self._workers) + STARTUP_TIMEOUT_S:
                raise RuntimeError(f"no verifier worker started within {STARTUP_TIMEOUT_S} s")
        return [r for r in results if r is not None]

    def _receive(self, worker: _Worker, results: list[Outcome | None], pending: deque[int]) -> None:
        try:
            status, value, seconds = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(5)
            code = worker.process.exitcode
            if not worker.ready:  # it could not start (an import error, say): restarting would loop
                raise RuntimeError(f"a verifier worker exited before it was ready (exit code {code})") from None
            if not worker.queue:  # it died idle (killed from outside): replace it, nothing is lost
                self._replace(worker)
                return
            index = worker.queue.popleft()
            message = f"worker died (exit code {code})"
            results[index] = Outcome("error", seconds=time.monotonic() - worker.head_start, message=message)
            pending.extendleft(reversed(worker.queue))
            self._replace(worker)
            return
        if status == "ready":
            worker.ready = True
            return
        assert worker.queue, "a worker answered without a task"
        index = worker.queue.popleft()
        worker.head_start = time.monotonic()
        worker.deadline = worker.head_start + self.timeout_s
        results[index] = Outcome("ok", value, seconds) if status == "ok" else Outcome("error", None, seconds, value)

    def close(self) -> None:
        """Stop every worker (idempotent; the pool restarts lazily if used again)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (for tests and diagnostics)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]


class MathReward(RewardFunction):
    """``correct_value`` when the completion's final answer equals the gold, else ``incorrect_value``.

    Answers are checked by :func:`lightning_grpo.rewards.verifier.check` under a
    :class:`~lightning_grpo.rewards.verifier.VerifyPolicy` built from ``mode``, ``percent``,
    ``rounded_decimals`` and ``min_rounded_digits``. ``checker`` replaces the check (a module-level
    function with :func:`check_task`'s signature), e.g. to benchmark another verifier under the same pool.

    ``mode`` is how the answer is found (see :mod:`lightning_grpo.rewards.extraction`); ``validate``
    uses the same reward, so training and evaluation read answers alike:

    - ``"lenient"`` (the default): explicit markers first (``\\boxed{}``, ``####``, "the answer is",
      "Answer: …", ``Answer $9$``, Minerva's "Final Answer: …", ``<answer>`` tags, a bold last line),
      then, for a completion that was not truncated, the math or number of its final statement. It is
      the default because a reward that ignores a correct answer is a silent loss of learning signal,
      and an evaluation that under-counts is not comparable with published numbers (which use lenient
      graders such as Math-Verify); hedges, truncations and later turns still score 0.
    - ``"strict"``: only ``\\boxed{}``, ``####`` and "the answer is" count, for runs that reward the
      answer format separately (e.g. with :class:`~lightning_grpo.rewards.format.FormatReward`) and
      want no credit for an unmarked answer.

    ``backend`` picks the checker: ``"lightning_grpo"`` (the default, this package's verifier) or
    ``"math_verify"`` (Hugging Face's Math-Verify, the grader TRL's accuracy reward uses; an optional
    dependency: ``pip install math-verify``). Both run in the same killable worker pool, so a
    Math-Verify hang costs one timeout, not a stalled run. Math-Verify ignores ``mode``, ``percent``,
    ``rounded_decimals`` and truncation; :meth:`extract` (maj@k voting) always uses this package's
    answer finding.

    ``answer_form`` is what a right answer may look like when the gold is a plain number: ``"any"`` (the
    default) accepts any expression equal to it, ``"number"`` only a number written out (``54``, ``-3.5``,
    ``1,234``; after the last ``=`` of an equation). Use ``"number"`` where the question holds the
    expression: asked "What is 49+5?", a policy learns to answer "49 + 5", which equals the gold, instead
    of adding (seen on SmolLM2 within 20 GRPO steps, docs/real_model.md).

    ``setup()`` starts the worker pool ahead of the first batch (otherwise it starts on first use).
    """

    is_correctness = True

    def __init__(
        self,
        name: str = "correct",
        weight: float = 1.0,
        correct_value: float = 1.0,
        incorrect_value: float = 0.0,
        timeout_s: float = 2.0,
        num_workers: int = 2,
        percent: Literal["strip", "either", "strict"] = "strip",
        rounded_decimals: bool = False,
        min_rounded_digits: int = 2,
        mode: Literal["lenient", "strict"] = "lenient",
        checker: Callable[[str, str, VerifyPolicy, bool], tuple[bool, str | None]] | None = None,
        backend: Backend = "lightning_grpo",
        answer_form: Literal["any", "number"] = "any",
    ) -> None:
        super().__init__(name=name, weight=weight)
        if answer_form not in ("any", "number"):
            raise ValueError(f"answer_form must be 'any' or 'number', got {answer_form!r}")
        self.answer_form = answer_form
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "math_verify":
            _require_math_verify()
        if checker is None:
            checker = math_verify_task if backend == "math_verify" else check_task
        self.backend = backend
        self.correct_value = correct_value
        self.incorrect_value = incorrect_value
        self.policy = VerifyPolicy(
            percent=percent, rounded_decimals=rounded_decimals, min_rounded_digits=min_rounded_digits, mode=mode
        )
        self.pool = VerifierPool(checker, num_workers=num_workers, timeout_s=timeout_s)
        self._timeouts = 0
        self._errors = 0

    def score(self, batch: RewardBatch) -> list[float]:
        truncated = batch.truncated or [False] * len(batch.completions)
        keys = [(c, g, t) for c, g, t in zip(batch.completions, batch.golds, truncated)]
        unique = list(dict.fromkeys(keys))
        outcomes = dict(zip(unique, self.pool.map([(c, g, self.policy, t) for c, g, t in unique])))
        values = []
        for key, completion_id in zip(keys, batch.completion_ids):
            outcome = outcomes[key]
            correct, error = outcome.value if outcome.status == "ok" else (False, outcome.message)
            if error is not None:
                if outcome.status == "timeout":
                    self._timeouts += 1
                else:
                    self._errors += 1
                logger.warning("verifier %s on %s: %s", outcome.status, completion_id, error)
            if correct and self.answer_form == "number" and not self._written_out(key[0], key[1], key[2]):
                correct = False  # equal to the gold, but not a number: e.g. the question's expression restated
            values.append(self.correct_value if correct else self.incorrect_value)
        return values

    def _written_out(self, completion: str, gold: str, truncated: bool) -> bool:
        """Whether the answer is a number written out, where the gold is one (``answer_form: number``): the
        canonical spelling (units, ``$``, ``%``, fonts, degrees dropped by :func:`normalize_answer`) of the
        answer, or of its part after the last ``=``, is a numeral, not an expression."""
        if not _NUMBER.match(normalize_answer(gold).text):
            return True  # the rule is about number golds only
        answer = extract_answer(completion, truncated=truncated, mode=self.policy.mode)
        return answer is not None and bool(_NUMBER.match(normalize_answer(answer.rsplit("=", 1)[-1]).text))

    def setup(self) -> None:
        """Start the worker processes now and wait until they are ready (idempotent)."""
        self.pool.start(block=True)

    def extract(self, completion: str, truncated: bool = False) -> str | None:
        """The extracted final answer with whitespace removed (equal strings vote together in maj@k)."""
        answer = extract_answer(completion, truncated=truncated, mode=self.policy.mode)
        return None if answer is None else "".join(answer.split())

    def counters(self) -> dict[str, float]:
        """Timeouts and errors since the last call (then reset)."""
        counts = {"verifier_timeouts": float(self._timeouts), "verifier_errors": float(self._errors)}
        self._timeouts = self._errors = 0
        return counts

    def close(self) -> None:
        """Stop the worker processes (they restart lazily on the next batch)."""
        self.pool.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["pool"] = VerifierPool(
            self.pool.function, self.pool.num_workers, self.pool.timeout_s, self.pool.start_method
        )
        return state

