"""MathReward: batch scoring through killable workers, timeouts, crashes, and the composer."""

from __future__ import annotations

import os
import pickle
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
    start = time.monotonic()
    values = engineered.score(_batch(["SLEEP", "\\boxed{1}", "BIGNUM", "CRASH", "RAISE", "\\boxed{2}"], ["1"] * 6))
    assert time.monotonic() - start < 10
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
