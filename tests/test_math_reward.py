"""MathReward: batch scoring through killable workers, timeouts, crashes, and the composer."""

from __future__ import annotations

import importlib.util
import os
import pickle
import signal
import time
from collections.abc import Iterator

import pytest

from lightning_grpo.rewards import MathReward, RewardBatch, RewardComposer, RewardError, RewardFunction
from lightning_grpo.rewards.math import VerifierPool, check_task
from lightning_grpo.rewards.verifier import VerifyPolicy


def slow_or_crashing_check(completion: str, gold: str, policy: VerifyPolicy, truncated: bool) -> tuple[bool, str | None]:
    """A checker with engineered failures: 'SLEEP' hangs, 'BIGNUM' does C-level work, 'CRASH' dies."""
    if "SLEEP" in completion:
        time.sleep(60)
    if "BIGNUM" in completion:
        pow(3, 10**10)  # minutes of C-level bignum work: no Python signal handler could interrupt it
    if "CRASH" in completion:
        os._exit(3)
    if "SIGKILL" in completion:
        os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of a task, as the OOM killer would
    if "RAISE" in completion:
        raise ValueError("checker bug")
    return check_task(completion, gold, policy, truncated)


def _batch(completions: list[str], golds: list[str]) -> RewardBatch:
    n = len(completions)
    return RewardBatch(
        prompts=["q"] * n,
        completions=completions,
        golds=golds,
        completion_ids=[f"p/{i}" for i in range(n)],
        group_ids=[0] * n,
        lengths=[10] * n,
        truncated=[False] * n,
    )


@pytest.fixture
def engineered() -> Iterator[MathReward]:
    reward = MathReward(timeout_s=1.0, num_workers=2, checker=slow_or_crashing_check)
    yield reward
    reward.close()


def test_scores_a_batch() -> None:
    reward = MathReward(correct_value=2.0, incorrect_value=-1.0)
    try:
        batch = _batch(
            ["\\boxed{4}", "The answer is 5.", "#### 1,000", "\\boxed{\\frac{1}{2}}", "I am not sure", "\\boxed{4}"],
            ["4", "4", "1000", "0.5", "1", "4"],
        )
        assert reward.score(batch) == [2.0, -1.0, 2.0, 2.0, -1.0, 2.0]
        assert reward.counters() == {"verifier_timeouts": 0.0, "verifier_errors": 0.0}
    finally:
        reward.close()


def test_timeouts_and_crashes_are_counted_and_workers_replaced(engineered: MathReward) -> None:
    values = engineered.score(_batch(["SLEEP", "\\boxed{1}", "BIGNUM", "CRASH", "RAISE", "\\boxed{2}"], ["1"] * 6))
    assert engineered.pool.restarts == 3  # two timeouts and a crash; a raising check keeps its worker
    assert values == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert engineered.counters() == {"verifier_timeouts": 2.0, "verifier_errors": 2.0}
    assert engineered.counters() == {"verifier_timeouts": 0.0, "verifier_errors": 0.0}  # reset on read
    assert engineered.score(_batch(["\\boxed{7}"], ["7"])) == [1.0]  # replacements work


def test_a_tiny_timeout_times_out_real_checks() -> None:
    reward = MathReward(timeout_s=1e-4, num_workers=1)
    try:
        assert reward.score(_batch(["\\boxed{\\sqrt{2}+\\pi}"], ["\\pi+\\sqrt2"])) == [0.0]
        assert reward.counters()["verifier_timeouts"] == 1.0
    finally:
        reward.close()


def test_close_stops_the_workers(engineered: MathReward) -> None:
    engineered.score(_batch(["\\boxed{1}"], ["1"]))
    pids = engineered.pool.pids
    assert len(pids) == 2
    engineered.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_pickles_without_its_workers() -> None:
    reward = MathReward(timeout_s=3.0, percent="either")
    try:
        reward.score(_batch(["\\boxed{1}"], ["1"]))
        clone = pickle.loads(pickle.dumps(reward))
        assert clone.pool.pids == [] and clone.pool.timeout_s == 3.0 and clone.policy.percent == "either"
        assert clone.score(_batch(["\\boxed{50\\%}"], ["0.5"])) == [1.0]
        clone.close()
    finally:
        reward.close()


def test_pool_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        VerifierPool(check_task, num_workers=0)
    with pytest.raises(ValueError):
        VerifierPool(check_task, timeout_s=0)


class _Raises(RewardFunction):
    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
        if "bad" in completion:
            raise RuntimeError("boom")
        return 1.0


def test_composer_names_a_raising_reward_or_counts_a_zero() -> None:
    batch = _batch(["good", "bad"], ["1", "1"])
    with pytest.raises(RewardError, match=r"'shaky'.*'p/1'.*boom"):
        RewardComposer([_Raises("shaky")])(batch)
    composer = RewardComposer([_Raises("shaky")], on_error="zero")
    total, parts = composer(_batch(["good", "bad"], ["1", "1"]))
    assert total == [1.0, 0.0] and parts["shaky"] == [1.0, 0.0]
    assert composer.error_counts == {"shaky": 1}


def test_mode_comes_from_the_constructor_for_scores_and_extract() -> None:
    batch = _batch(["Answer: 7", "so $x = 7$.", "\\boxed{7}"], ["7", "7", "7"])
    lenient, strict = MathReward(num_workers=1), MathReward(num_workers=1, mode="strict")
    try:
        assert lenient.score(batch) == [1.0, 1.0, 1.0]
        assert strict.score(batch) == [0.0, 0.0, 1.0]
        assert lenient.extract("Answer: 7") == "7" and strict.extract("Answer: 7") is None
        assert pickle.loads(pickle.dumps(strict)).policy.mode == "strict"
    finally:
        lenient.close()
        strict.close()
    with pytest.raises(ValueError, match="'loose'"):
        MathReward(mode="loose")  # type: ignore[arg-type]


def test_setup_starts_the_pool_before_the_first_batch() -> None:
    reward = MathReward(num_workers=2)
    try:
        assert reward.pool.pids == []  # nothing runs before setup
        reward.setup()
        pids = reward.pool.pids
        assert len(pids) == 2 and all(w.ready for w in reward.pool._workers)
        for pid in pids:
            os.kill(pid, 0)  # alive
        assert reward.score(_batch(["\\boxed{2}"], ["2"])) == [1.0]
        assert reward.pool.restarts == 0  # no worker was started (or restarted) for the batch
        assert reward.pool.pids == pids  # the batch used the workers setup started
        reward.setup()
        assert reward.pool.pids == pids  # idempotent
    finally:
        reward.close()


def test_the_base_setup_hook_leaves_a_reward_scoring_as_before() -> None:
    reward = _Raises("shaky")
    batch = _batch(["good", "bad"], ["1", "1"])
    before = dict(reward.__dict__)
    reward.setup()
    assert reward.__dict__ == before  # the base hook changes nothing
    with pytest.raises(RuntimeError, match="boom"):
        reward.score(batch)
    assert reward.score(_batch(["good", "good"], ["1", "1"])) == [1.0, 1.0]


def test_a_long_map_with_replaced_workers_outlasts_the_startup_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The startup limit counts from each worker's own start, not from the start of the batch: a batch
    that runs longer than the limit while both workers are being replaced must not fail."""
    import lightning_grpo.rewards.math as math_module

    reward = MathReward(timeout_s=1.0, num_workers=2, checker=slow_or_crashing_check)
    try:
        reward.setup()
        monkeypatch.setattr(math_module, "STARTUP_TIMEOUT_S", 2.5)
        values = reward.score(_batch([f"SLEEP {i}" for i in range(6)] + ["\\boxed{3}"], ["1"] * 6 + ["3"]))
        assert values == [0.0] * 6 + [1.0]
        assert reward.counters()["verifier_timeouts"] == 6.0
        # six 1 s timeouts on two workers: the batch outlasted the 2.5 s startup limit, its workers
        # replaced six times, and it still finished
        assert reward.pool.restarts == 6
    finally:
        reward.close()


def test_chunked_tasks_after_a_timeout_or_a_crash_are_run_again(engineered: MathReward) -> None:
    """Workers take tasks in chunks; a timeout or a crash in the middle of a chunk costs only that
    task: the rest of the chunk runs on another worker and keeps its own result."""
    completions = [f"\\boxed{{{i}}}" for i in range(40)]
    completions[5], completions[17] = "SLEEP 5", "CRASH 17"
    golds = [str(i) for i in range(40)]
    golds[33] = "wrong"
    values = engineered.score(_batch(completions, golds))
    expected = [1.0] * 40
    expected[5] = expected[17] = expected[33] = 0.0
    assert values == expected
    assert engineered.counters() == {"verifier_timeouts": 1.0, "verifier_errors": 1.0}


def test_a_worker_killed_in_the_middle_of_a_task_costs_that_task_only(engineered: MathReward) -> None:
    values = engineered.score(_batch(["\\boxed{1}", "SIGKILL", "\\boxed{3}", "\\boxed{4}"], ["1", "2", "3", "4"]))
    assert values == [1.0, 0.0, 1.0, 1.0]
    assert engineered.counters() == {"verifier_timeouts": 0.0, "verifier_errors": 1.0}
    assert engineered.pool.restarts == 1


def test_a_worker_killed_while_idle_is_replaced_and_nothing_is_lost(engineered: MathReward) -> None:
    engineered.setup()
    victim = engineered.pool._workers[0]
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.join(10)
    assert not victim.process.is_alive()
    values = engineered.score(_batch([f"\\boxed{{{i}}}" for i in range(8)], [str(i) for i in range(8)]))
    assert values == [1.0] * 8  # every task ran: none was sent to the dead worker
    assert engineered.counters() == {"verifier_timeouts": 0.0, "verifier_errors": 0.0}
    assert engineered.pool.restarts == 1
    assert victim.process.pid not in engineered.pool.pids and len(engineered.pool.pids) == 2


def test_a_dead_worker_seen_without_a_task_is_replaced_not_an_error(engineered: MathReward) -> None:
    """The pool notices a dead idle worker from its closed pipe (while other workers are busy, say):
    it is replaced, and no task is charged for it."""
    from collections import deque

    engineered.setup()
    victim = engineered.pool._workers[1]
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.join(10)
    results: list[object] = []
    engineered.pool._receive(victim, results, deque())
    assert results == [] and engineered.pool.restarts == 1 and victim not in engineered.pool._workers
    assert engineered.score(_batch(["\\boxed{5}"], ["5"])) == [1.0]


def test_every_worker_killed_between_batches_still_scores_the_next_batch(engineered: MathReward) -> None:
    engineered.setup()
    for worker in list(engineered.pool._workers):
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.join(10)
    assert engineered.score(_batch(["\\boxed{5}", "\\boxed{6}"], ["5", "7"])) == [1.0, 0.0]
    assert engineered.pool.restarts == 2


def test_backend_must_be_known_and_math_verify_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="'sympy'"):
        MathReward(backend="sympy")  # type: ignore[arg-type]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "math_verify" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match="pip install math-verify"):
        MathReward(backend="math_verify")


@pytest.mark.skipif(importlib.util.find_spec("math_verify") is None, reason="math-verify is not installed")
def test_math_verify_backend_scores_in_the_killable_pool() -> None:
    from lightning_grpo.rewards.math import math_verify_task

    reward = MathReward(backend="math_verify", num_workers=1)
    try:
        assert reward.pool.function is math_verify_task
        batch = _batch(["\\boxed{\\frac{1}{2}}", "The answer is $3$.", "\\boxed{x^2+2x+1}", "\\boxed{5}"],
                       ["0.5", "4", "(x+1)^2", "5"])
        assert reward.score(batch) == [1.0, 0.0, 1.0, 1.0]
        assert reward.counters() == {"verifier_timeouts": 0.0, "verifier_errors": 0.0}
        clone = pickle.loads(pickle.dumps(reward))
        assert clone.backend == "math_verify" and clone.pool.function is math_verify_task
    finally:
        reward.close()


def test_answer_form_number_refuses_the_questions_expression_restated() -> None:
    # Asked "What is 49+5?", SmolLM2 learned within 20 GRPO steps to answer "49 + 5", which equals the gold.
    completions = ["The answer is 49+5", "49 + 5", "49 + 5 = 54.", "54", "The answer is 54.", "\\boxed{54}", "49 + 5 = 55",
                   "The answer is 1,234", "The answer is 2.50"]
    golds = ["54"] * 7 + ["1234", "2.5"]
    lenient, numbers = MathReward(num_workers=1), MathReward(num_workers=1, answer_form="number")
    try:
        assert lenient.score(_batch(completions, golds)) == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
        assert numbers.score(_batch(completions, golds)) == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
        # the family it must accept: one numeral however it is dressed (units, currency, percent, degrees,
        # fonts, an equation's right-hand side); and near misses it must refuse (an expression equal to it)
        dressed = ["54 apples", "\\$54", "54\\%", "\\boxed{54^\\circ}", "\\mathbf{54}", "x = 54", "The answer is 50+4 = 54"]
        assert numbers.score(_batch(dressed, ["54"] * len(dressed))) == [1.0] * len(dressed)
        near = ["54 + 0", "\\boxed{\\frac{108}{2}}", "The answer is 2*27", "\\boxed{49+5}"]
        assert lenient.score(_batch(near, ["54"] * 4)) == [1.0] * 4
        assert numbers.score(_batch(near, ["54"] * 3 + ["$54$"])) == [0.0] * 4  # a dressed gold is a number gold
        # a gold that is not a plain number (a fraction, an expression) keeps the verifier's equivalence
        assert numbers.score(_batch(["\\frac{2}{4}", "1/2"], ["\\frac{1}{2}", "\\frac{1}{2}"])) == [1.0, 1.0]
    finally:
        lenient.close()
        numbers.close()
    with pytest.raises(ValueError, match="answer_form must be 'any' or 'number', got 'digits'"):
        MathReward(answer_form="digits")  # type: ignore[arg-type]
