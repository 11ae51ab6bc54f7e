"""Format reward, AGPO length reward and DAPO overlong penalty on hand-built batches."""

from __future__ import annotations

import pytest

from lightning_grpo.rewards import AGPOLengthReward, ExactInteger, FormatReward, OverlongPenalty, RewardBatch, RewardComposer


def _batch(lengths: list[int], group_ids: list[int], completions: list[str] | None = None, max_new_tokens: int = 100) -> RewardBatch:
    n = len(lengths)
    return RewardBatch(
        prompts=["q"] * n,
        completions=completions or ["x"] * n,
        golds=["1"] * n,
        completion_ids=[f"p/{i}" for i in range(n)],
        group_ids=group_ids,
        lengths=lengths,
        truncated=[False] * n,
        max_new_tokens=max_new_tokens,
    )


def test_format_reward() -> None:
    plain = FormatReward()
    think = FormatReward(require_think=True, reward=0.5, penalty=-0.5)
    completions = [
        "so \\boxed{4}",
        "the answer is 4",
        "\\boxed{}",
        "\\boxed{4",
        "<think>hmm</think> \\boxed{4}",
        "<think>hmm \\boxed{4}",
        "<think>a</think><think>b</think>\\boxed{4}",
        "\\boxed{3} or \\boxed{4}",
        "done<|im_end|>\\boxed{4}",
    ]
    assert [plain.score_one("", c, "4", {}) for c in completions] == [1, 0, 0, 0, 1, 1, 1, 0, 0]
    assert [think.score_one("", c, "4", {}) for c in completions] == [-0.5, -0.5, -0.5, -0.5, 0.5, -0.5, -0.5, -0.5, -0.5]


def _bound(length: AGPOLengthReward, judge: ExactInteger | None = None) -> AGPOLengthReward:
    RewardComposer([judge or ExactInteger(), length])  # binds the length reward to the correctness reward
    return length


def test_agpo_length_reward() -> None:
    # group 0 mixed: correct lengths 10, 30, 20 -> L_min 10, L_max 30; group 1 all correct; group 2 one correct
    batch = _batch([10, 30, 5, 20, 7, 9, 40, 50], [0, 0, 0, 0, 1, 1, 2, 2])
    batch.scores["correct"] = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    values = _bound(AGPOLengthReward()).score(batch)
    span = 30 - 10 + 1e-6
    expected = [0.1, 0.1 * (1 - 20 / span), 0.0, 0.1 * (1 - 10 / span), 0.0, 0.0, 0.0, 0.1]
    assert values == pytest.approx(expected, abs=1e-12)
    assert values[3] == pytest.approx(0.05, abs=1e-8)


def test_agpo_length_reward_needs_correctness_first() -> None:
    with pytest.raises(KeyError, match="'correct'"):
        _bound(AGPOLengthReward()).score(_batch([1], [0]))
    with pytest.raises(RuntimeError, match="not bound"):
        AGPOLengthReward().score(_batch([1], [0]))


def test_agpo_length_reward_refuses_a_bad_configuration_at_startup() -> None:
    with pytest.raises(ValueError, match="needs a correctness reward.*listed before it.*\\['length'\\]"):
        RewardComposer([AGPOLengthReward()])
    with pytest.raises(ValueError, match="listed before it.*\\['length', 'correct'\\]"):
        RewardComposer([AGPOLengthReward(), ExactInteger()])
    # naming the correctness reward: it must exist and come first
    with pytest.raises(ValueError, match="'judge'.*\\['correct', 'length'\\]"):
        RewardComposer([ExactInteger(), AGPOLengthReward(correctness="judge")])
    with pytest.raises(ValueError, match="listed before"):
        RewardComposer([AGPOLengthReward(correctness="correct"), ExactInteger()])


def test_agpo_length_reward_finds_the_tasks_correctness_reward_whatever_its_name() -> None:
    # An objective recipe adds the length reward to any task: it reads the task's correctness reward.
    batch = _batch([10, 20, 30], [0, 0, 0], completions=["1", "1", "2"])
    composer = RewardComposer([FormatReward(), ExactInteger(name="exact"), AGPOLengthReward()])
    _, parts = composer(batch)
    assert parts["exact"] == [1.0, 1.0, 0.0]
    assert parts["length"] == pytest.approx([0.1, 0.1 * (1 - 10 / (10 + 1e-6)), 0.0])


def test_agpo_through_the_composer_reads_the_correctness_reward() -> None:
    batch = _batch([10, 20, 30], [0, 0, 0], completions=["1", "1", "2"])
    composer = RewardComposer([ExactInteger(), AGPOLengthReward(weight=2.0)])
    total, parts = composer(batch)
    assert parts["correct"] == [1.0, 1.0, 0.0]
    assert parts["length"] == pytest.approx([0.1, 0.1 * (1 - 10 / (10 + 1e-6)), 0.0])
    assert total == pytest.approx([1.2, 1.0 + 2 * parts["length"][1], 0.0])


def test_agpo_length_reward_takes_the_verdict_of_a_correctness_reward_paying_other_values() -> None:
    # The correctness reward pays 2.0 / -1.0: the length reward must still see rows 0 and 1 as correct
    # (it once compared with its own correct_value 1.0 and silently gave every completion 0).
    batch = _batch([10, 20, 30], [0, 0, 0], completions=["1", "1", "2"])
    composer = RewardComposer([ExactInteger(correct_value=2.0, incorrect_value=-1.0), AGPOLengthReward()])
    _, parts = composer(batch)
    assert parts["correct"] == [2.0, 2.0, -1.0]
    assert parts["length"] == pytest.approx([0.1, 0.1 * (1 - 10 / (10 + 1e-6)), 0.0])


def test_overlong_penalty() -> None:
    batch = _batch([80, 81, 90, 100, 50], [0, 0, 0, 0, 0], max_new_tokens=100)
    assert OverlongPenalty(cache_len=20).score(batch) == pytest.approx([0.0, -1 / 20, -0.5, -1.0, 0.0])
    # an explicit max_len overrides the batch's budget; beyond it the penalty is -1
    assert OverlongPenalty(cache_len=20, max_len=85).score(batch) == pytest.approx([-0.75, -0.8, -1.0, -1.0, 0.0])
    with pytest.raises(ValueError):
        OverlongPenalty(cache_len=0)
    with pytest.raises(ValueError):
        OverlongPenalty(cache_len=200).score(batch)


def test_overlong_penalty_sizes_its_cache_zone_from_the_budget() -> None:
    # cache_fraction 0.5 of the demo's 8 tokens is DAPO's old fixed cache_len 4 there, value for value
    demo = _batch(list(range(11)), [0] * 11, max_new_tokens=8)
    assert OverlongPenalty(cache_fraction=0.5).score(demo) == OverlongPenalty(cache_len=4).score(demo)
    assert OverlongPenalty(cache_fraction=0.5).score(demo)[5:10] == pytest.approx([-0.25, -0.5, -0.75, -1.0, -1.0])
    # the same recipe on a 512-token task: the zone is its last 256 tokens, not the demo's 4
    gsm8k = _batch([256, 257, 384, 512, 513], [0] * 5, max_new_tokens=512)
    assert OverlongPenalty(cache_fraction=0.5).cache_tokens(512) == 256
    assert OverlongPenalty(cache_fraction=0.5).score(gsm8k) == pytest.approx([0.0, -1 / 256, -0.5, -1.0, -1.0])
    # neither given: the paper's 4,096 of 20,480 tokens
    assert OverlongPenalty().cache_tokens(20480) == 4096 and OverlongPenalty().cache_tokens(3) == 1
    with pytest.raises(ValueError, match="not both"):
        OverlongPenalty(cache_len=4, cache_fraction=0.5)
    with pytest.raises(ValueError, match="cache_fraction must be in \\(0, 1\\], got 1.5"):
        OverlongPenalty(cache_fraction=1.5)
