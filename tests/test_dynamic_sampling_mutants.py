"""Dynamic sampling: what the audit's surviving mutants changed, pinned by public behaviour.

Two realistic bugs passed the whole suite: the first-round accuracy read from the *kept* groups
(which are mixed ones only) instead of the first round as sampled, and groups filtered on the total
reward (correctness plus shaping, e.g. an overlong penalty) instead of on correctness. Each test here
builds rollouts where the right and the wrong reading give different answers.
"""

from __future__ import annotations

import pytest
import torch

from lightning_grpo.dynamic_sampling import DynamicSampling, informative_groups
from lightning_grpo.rollout import Rollout

PAD = 0


def scored_rollout(correct: list[list[int]], penalty: list[list[float]], tag: str) -> Rollout:
    """Groups with the given correctness [P][G]; total reward = correct − penalty (a shaping term)."""
    p, g = len(correct), len(correct[0])
    n = p * g
    right = torch.tensor(correct).flatten().bool()  # [N]
    shaping = -torch.tensor(penalty, dtype=torch.float32).flatten()  # [N]
    ids = torch.arange(1, n + 1).unsqueeze(1).expand(n, 4).clone()  # [N, 2 + 2]
    return Rollout(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        completion_mask=torch.ones(n, 2, dtype=torch.long),
        truncated=torch.zeros(n, dtype=torch.bool),
        rewards=right.float() + shaping,
        reward_components={"correct": right.float(), "overlong": shaping},
        group_ids=torch.arange(n) // g,
        group_size=g,
        prompt_length=2,
        temperature=1.0,
        max_new_tokens=2,
        correct=right,
        prompts=[f"{tag}{i}" for i in range(p)],
        completions=[f"{tag}-c{i}" for i in range(n)],
        golds=[f"{tag}-g{i}" for i in range(p)],
    )


def fill(first: Rollout, extra: list[Rollout], max_extra_rounds: int = 4) -> Rollout:
    queue = list(extra)
    return DynamicSampling(max_extra_rounds).fill(first, lambda: queue.pop(0), lambda short: short, PAD)


def test_groups_are_informative_by_correctness_not_by_total_reward() -> None:
    rollout = scored_rollout(
        correct=[[1, 1], [1, 0], [0, 0], [1, 0]],
        # group 0: both right, one penalised (totals 1.0 and 0.5 differ); group 1: mixed, totals 0.5 and 0.5 tie
        # (1 − 0.5 and 0 − (−0.5)); group 2: both wrong, one penalised; group 3: mixed, no shaping
        penalty=[[0.0, 0.5], [0.5, -0.5], [0.0, 0.25], [0.0, 0.0]],
        tag="a",
    )
    assert rollout.rewards.view(4, 2)[1].tolist() == [0.5, 0.5]  # equal totals, different outcomes
    assert informative_groups(rollout) == [1, 3]


def test_without_a_correctness_reward_the_total_reward_decides() -> None:
    rollout = scored_rollout(correct=[[1, 1], [1, 0]], penalty=[[0.0, 0.5], [0.0, 1.0]], tag="a")
    rollout.correct = None  # rewards: [1.0, 0.5], [1.0, -1.0]; the first group differs only by shaping
    assert informative_groups(rollout) == [0, 1]


def test_fill_keeps_groups_decided_right_but_shaped_differently_out() -> None:
    first = scored_rollout([[1, 1], [1, 0]], [[0.0, 0.5], [0.0, 0.0]], tag="a")  # group a0 is all right
    second = scored_rollout([[0, 1], [1, 1]], [[0.0, 0.0], [0.3, 0.0]], tag="b")  # b0 mixed, b1 all right
    out = fill(first, [second])
    assert out.prompts == ["a1", "b0"]
    assert out.valid.all()
    assert out.stats["sampling/informative_frac_first_round"] == 1 / 2
    assert out.stats["sampling/extra_rounds"] == 1.0


def test_first_round_accuracy_is_the_first_round_as_sampled_not_the_kept_groups() -> None:
    first = scored_rollout([[1, 1], [1, 1], [1, 0]], [[0.0] * 2] * 3, tag="a")  # right 5 times in 6
    second = scored_rollout([[0, 1], [1, 0], [0, 0]], [[0.0] * 2] * 3, tag="b")
    out = fill(first, [second])
    assert out.prompts == ["a2", "b0", "b1"]
    assert out.correct.float().mean().item() == 0.5  # the kept groups are mixed: right half of the time
    assert out.stats["sampling/first_round_accuracy"] == pytest.approx(5 / 6)
    assert out.stats["sampling/informative_frac_first_round"] == 1 / 3


def test_first_round_metrics_ignore_what_the_extra_rounds_found() -> None:
    first = scored_rollout([[0, 0], [0, 0]], [[0.0] * 2] * 2, tag="a")  # nothing right, nothing informative
    second = scored_rollout([[1, 0], [1, 1]], [[0.0] * 2] * 2, tag="b")
    third = scored_rollout([[1, 1], [0, 1]], [[0.0] * 2] * 2, tag="c")
    out = fill(first, [second, third])
    assert out.prompts == ["b0", "c1"]
    assert out.stats["sampling/first_round_accuracy"] == 0.0
    assert out.stats["sampling/informative_frac_first_round"] == 0.0
    assert out.stats["sampling/kept_group_frac"] == 1.0
    assert out.stats["sampling/extra_rounds"] == 2.0


# ---- found by the rule-based mutation check (tools/mutation_check.py lightning_grpo/dynamic_sampling.py)


def test_an_extra_round_with_more_informative_groups_than_needed_is_cut_to_the_batch() -> None:
    first = scored_rollout([[1, 1], [1, 0], [0, 0]], [[0.0] * 2] * 3, tag="a")  # one informative group of 3
    second = scored_rollout([[0, 1], [1, 0], [0, 1]], [[0.0] * 2] * 3, tag="b")  # three more: one too many
    out = fill(first, [second])
    assert out.prompts == ["a1", "b0", "b1"]
    assert out.input_ids.shape[0] == 6 and out.valid.tolist() == [True] * 6
    assert out.stats["sampling/kept_group_frac"] == 1.0


def test_when_rounds_run_out_the_first_rounds_unpicked_groups_fill_the_batch_without_loss() -> None:
    first = scored_rollout([[1, 1], [1, 0], [0, 0]], [[0.0] * 2] * 3, tag="a")
    second = scored_rollout([[0, 0], [1, 1], [0, 0]], [[0.0] * 2] * 3, tag="b")  # nothing informative
    out = fill(first, [second], max_extra_rounds=1)
    # the kept group first, then the first round's groups not already kept (a0, then a2), as fillers
    assert out.prompts == ["a1", "a0", "a2"]
    assert out.valid.tolist() == [True, True, False, False, False, False]
    assert out.stats["sampling/kept_group_frac"] == pytest.approx(1 / 3)


def test_zero_extra_rounds_is_allowed_and_default_is_four() -> None:
    first = scored_rollout([[1, 1], [1, 0]], [[0.0] * 2] * 2, tag="a")
    out = fill(first, [], max_extra_rounds=0)  # sample_more is never called (the queue is empty)
    assert out.prompts == ["a1", "a0"] and out.stats["sampling/extra_rounds"] == 0.0
    decided = [scored_rollout([[1, 1], [0, 0]], [[0.0] * 2] * 2, tag=f"r{i}") for i in range(6)]
    calls = []
    DynamicSampling().fill(first, lambda: calls.append(1) or decided.pop(0), lambda short: short, PAD)
    assert len(calls) == 4
    with pytest.raises(ValueError, match="-1"):
        DynamicSampling(-1)
