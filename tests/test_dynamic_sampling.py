"""DAPO dynamic sampling: uninformative groups are replaced by groups sampled from more prompts."""

from __future__ import annotations

import pytest
import torch

from lightning_grpo.dynamic_sampling import DynamicSampling
from lightning_grpo.rollout import Rollout

PAD = 0


def _rollout(correct: list[list[int]], prompt_length: int, completion_length: int, tag: str) -> Rollout:
    """Groups of 2 with the given correctness; token ids encode (tag, row) so rows can be traced."""
    p, g = len(correct), len(correct[0])
    n = p * g
    base = 10 if tag == "a" else 50
    ids = torch.arange(base, base + n).unsqueeze(1).expand(n, prompt_length + completion_length).clone()
    flat = torch.tensor(correct).flatten().bool()
    return Rollout(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        completion_mask=torch.ones(n, completion_length, dtype=torch.long),
        truncated=torch.zeros(n, dtype=torch.bool),
        rewards=flat.float(),
        reward_components={"correct": flat.float()},
        group_ids=torch.arange(n) // g,
        group_size=g,
        prompt_length=prompt_length,
        temperature=1.0,
        max_new_tokens=completion_length,
        correct=flat,
        prompts=[f"{tag}{i}" for i in range(p)],
        completions=[f"{tag}-c{i}" for i in range(n)],
        golds=[f"{tag}-g{i}" for i in range(p)],
        stats={"time/generation_s": 1.0},
    )


def _fill(first: Rollout, extra: list[Rollout], max_extra_rounds: int) -> Rollout:
    """DynamicSampling on one rank, the extra rounds scripted instead of sampled from a policy."""
    extra = list(extra)
    return DynamicSampling(max_extra_rounds).fill(first, lambda: extra.pop(0), lambda short: short, PAD)


def test_extra_round_fills_the_batch_with_mixed_groups_and_repads() -> None:
    first = _rollout([[1, 0], [1, 1], [0, 0]], prompt_length=2, completion_length=3, tag="a")
    second = _rollout([[0, 0], [0, 1], [1, 0]], prompt_length=4, completion_length=2, tag="b")
    out = _fill(first, [second], max_extra_rounds=3)
    # Kept: group 0 of the first round, groups 1 and 2 of the second, in that order.
    assert out.prompts == ["a0", "b1", "b2"]
    assert out.completions == ["a-c0", "a-c1", "b-c2", "b-c3", "b-c4", "b-c5"]
    assert out.correct.tolist() == [True, False, False, True, True, False]
    assert out.valid.all()
    assert out.stats["sampling/kept_group_frac"] == 1.0
    assert out.stats["sampling/extra_rounds"] == 1.0
    assert out.stats["sampling/informative_frac_first_round"] == 1 / 3
    # The kept groups are right 3 times in 6; the first round, as sampled, 3 times in 6 too (1,0 / 1,1 / 0,0).
    assert out.stats["sampling/first_round_accuracy"] == 3 / 6
    assert out.stats["time/generation_s"] == 2.0  # both rounds' generation time
    # Re-padded to prompt length 4 (left) and completion length 3 (right).
    assert out.prompt_length == 4 and out.input_ids.shape == (6, 7)
    assert out.input_ids[0].tolist() == [PAD, PAD, 10, 10, 10, 10, 10]
    assert out.attention_mask[0].tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert out.input_ids[2].tolist() == [52, 52, 52, 52, 52, 52, PAD]
    assert out.completion_mask[2].tolist() == [1, 1, 0]
    assert out.group_ids.tolist() == [0, 0, 1, 1, 2, 2]


def test_bounded_rounds_complete_the_batch_with_groups_that_carry_no_loss() -> None:
    first = _rollout([[1, 1], [0, 1], [1, 1]], prompt_length=2, completion_length=2, tag="a")
    second = _rollout([[0, 0], [1, 1], [0, 0]], prompt_length=2, completion_length=2, tag="b")
    out = _fill(first, [second], max_extra_rounds=1)
    assert out.num_groups == 3
    assert out.prompts[0] == "a1"  # the only informative group
    assert out.valid.tolist() == [True, True, False, False, False, False]
    assert out.stats["sampling/kept_group_frac"] == 1 / 3
    assert out.stats["sampling/extra_rounds"] == 1.0
    # The policy as sampled was right 5 times in 6; the one group it trains on, 1 time in 2.
    assert out.stats["sampling/first_round_accuracy"] == pytest.approx(5 / 6)
    assert out.correct[out.valid].float().mean() == 0.5


def test_negative_round_bound_is_named() -> None:
    with pytest.raises(ValueError, match="max_extra_rounds must be >= 0, got -1"):
        DynamicSampling(max_extra_rounds=-1)
