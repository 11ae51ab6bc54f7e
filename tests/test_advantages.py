"""Advantage estimators on hand-made rewards; expected values derived in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_grpo.advantages import AdvantageContext, Advantages, AGPOAdvantage, GroupNormalized, MeanCentered

EPS = 1e-4

# Group 0: [1, 0, 0, 1]: mean 0.5, centred ±0.5, unbiased var = 4·0.25/3 = 1/3 → std 1/√3.
# Group 1: [1, 1, 1, 1]: zero variance → Â = 0.
# Group 2: [0, 0, 0, 2]: mean 0.5, centred [−.5, −.5, −.5, 1.5], var = (3·0.25 + 2.25)/3 = 1 → std 1.
REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0]])
CENTRED = torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0], [-0.5, -0.5, -0.5, 1.5]])


def test_group_normalized_group_scale():
    out = GroupNormalized()(REWARDS)
    expected = CENTRED.clone()
    expected[0] /= 1 / math.sqrt(3) + EPS
    expected[2] /= 1.0 + EPS
    torch.testing.assert_close(out.values, expected)
    assert out.keep.all()
    assert out.metrics["zero_variance_frac"].item() == pytest.approx(1 / 3)


def test_group_normalized_batch_scale():
    # All 12 rewards: six 1s, five 0s, one 2 → mean 8/12 = 2/3.
    # Σ (r − 2/3)² = 6·(1/3)² + 5·(2/3)² + (4/3)² = 6/9 + 20/9 + 16/9 = 42/9; unbiased var = (42/9)/11 = 14/33.
    out = GroupNormalized(scale="batch")(REWARDS)
    torch.testing.assert_close(out.values, CENTRED / (math.sqrt(14 / 33) + EPS))


def test_group_normalized_no_scale_and_eps():
    torch.testing.assert_close(GroupNormalized(scale="none")(REWARDS).values, CENTRED)
    # verl's eps: group 2 divides by 1 + 1e-6
    out = GroupNormalized(eps=1e-6)(REWARDS)
    torch.testing.assert_close(out.values[2], CENTRED[2] / (1.0 + 1e-6))


def test_zero_variance_group_is_zero_even_without_eps():
    # eps = 0: a flat group's std is 0, so (r − mean)/std is 0/0; it must be 0, not NaN.
    out = GroupNormalized(eps=0.0)(REWARDS)
    assert torch.isfinite(out.values).all()
    torch.testing.assert_close(out.values[1], torch.zeros(4))
    torch.testing.assert_close(out.values[2], CENTRED[2])


def test_group_normalized_rejects_bad_input():
    with pytest.raises(ValueError, match="G >= 2"):
        GroupNormalized()(torch.ones(3, 1))
    with pytest.raises(ValueError, match="'median'"):
        GroupNormalized(scale="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="-1"):
        GroupNormalized(eps=-1.0)


def test_min_group_size_and_singleton_groups():
    # A group baseline needs G >= 2; verl's convention for a group of one is mean 0, std 1.
    assert GroupNormalized().min_group_size == 2 and AGPOAdvantage().min_group_size == 2
    assert MeanCentered().min_group_size == 2
    singles = torch.tensor([[1.0], [0.0], [3.0]])
    with pytest.raises(ValueError, match="allow_singleton_groups"):
        GroupNormalized()(singles)
    est = GroupNormalized(allow_singleton_groups=True)
    assert est.min_group_size == 1
    out = est(singles)
    torch.testing.assert_close(out.values, singles / (1 + EPS))  # r / (1 + eps), not 0
    assert out.keep.all() and out.metrics["zero_variance_frac"].item() == 0.0
    torch.testing.assert_close(MeanCentered(allow_singleton_groups=True)(singles).values, singles)
    # batch scale: r / (std over the batch + eps); std of [1, 0, 3] = √(7/3)
    torch.testing.assert_close(
        GroupNormalized(scale="batch", allow_singleton_groups=True)(singles).values, singles / (math.sqrt(7 / 3) + EPS)
    )
    # groups of G >= 2 are unchanged by the option
    torch.testing.assert_close(est(REWARDS).values, GroupNormalized()(REWARDS).values)
    # float64 rewards stay float64 (the reference tests compare to 1e-9)
    assert GroupNormalized()(REWARDS.double()).values.dtype == torch.float64


def test_mean_centered():
    # [[1,0,0,1],[2,2,2,2],[3,0,0,0]] − row means [0.5, 2, 0.75]
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0], [3.0, 0.0, 0.0, 0.0]])
    out = MeanCentered()(rewards)
    torch.testing.assert_close(
        out.values, torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0] * 4, [2.25, -0.75, -0.75, -0.75]])
    )
    assert out.keep.all()
    assert out.metrics["zero_variance_frac"].item() == pytest.approx(1 / 3)
    torch.testing.assert_close(out.values, GroupNormalized(scale="none")(rewards).values)


# Group 0 all correct (1), group 1 all wrong (0), group 2 mixed, group 3 all 0.5 (neither r_max nor r_min).
# Group 2: [1, 0, 0]: mean 1/3, centred [2/3, −1/3, −1/3], var = (4/9 + 1/9 + 1/9)/2 = 1/3 → std 1/√3.
AGPO_REWARDS = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
MIXED = torch.tensor([2 / 3, -1 / 3, -1 / 3]) / (1 / math.sqrt(3) + EPS)


def test_agpo_pm_one():
    out = AGPOAdvantage()(AGPO_REWARDS)
    expected = torch.stack([torch.ones(3), -torch.ones(3), MIXED, torch.zeros(3)])
    torch.testing.assert_close(out.values, expected)
    assert out.keep.all()
    assert out.metrics["zero_variance_frac"].item() == pytest.approx(0.75)
    assert out.metrics["plus_one_frac"].item() == pytest.approx(0.25)
    assert out.metrics["minus_one_frac"].item() == pytest.approx(0.25)
    assert out.metrics["pm_one_frac"].item() == pytest.approx(0.5)
    assert out.metrics["dropped_frac"].item() == 0.0
    assert out.metrics["pm_one_groups"].item() == 2


def test_agpo_zero_and_drop():
    out = AGPOAdvantage(zero_variance="zero")(AGPO_REWARDS)
    torch.testing.assert_close(out.values, torch.stack([torch.zeros(3), torch.zeros(3), MIXED, torch.zeros(3)]))
    assert out.keep.all()
    assert out.metrics["pm_one_frac"].item() == 0.0

    out = AGPOAdvantage(zero_variance="drop")(AGPO_REWARDS)
    # the three zero-variance groups are excluded (keep False); the mixed group is z-scored
    assert out.keep.tolist() == [[False] * 3, [False] * 3, [True] * 3, [False] * 3]
    torch.testing.assert_close(out.values[2], MIXED)
    assert out.metrics["dropped_frac"].item() == pytest.approx(0.75)
    assert out.metrics["dropped_groups"].item() == 3


def test_agpo_custom_range_and_atol():
    # r_max = 2, r_min = −1; group [2, 2+1e-9] is flat within atol → +1; [−1, −1] → −1; [0, 0] → 0.
    rewards = torch.tensor([[2.0, 2.0 + 1e-9], [-1.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    out = AGPOAdvantage(r_max=2.0, r_min=-1.0, atol=1e-6)(rewards)
    torch.testing.assert_close(out.values, torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.0, 0.0]], dtype=torch.float64))


def test_agpo_group_at_both_ends_within_atol_counts_as_all_correct():
    # atol = 0.5 spans r_max = 1 and r_min = 0: a flat group at 0.5 matches both; +1 (all correct) wins.
    out = AGPOAdvantage(atol=0.5)(torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
    torch.testing.assert_close(out.values, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    assert out.metrics["plus_one_frac"].item() == 0.5 and out.metrics["minus_one_frac"].item() == 0.5


def test_agpo_uses_correctness_for_zero_variance():
    # Total rewards carry a format bonus (0.1), so no group has zero *reward* variance; the test
    # uses correctness: group 0 all correct → +1, group 1 all wrong → −1, group 2 mixed → z-score of
    # the total rewards [1.1, 0, 0]: centred [2.2/3, −1.1/3, −1.1/3], std 1.1/√3.
    rewards = torch.tensor([[1.1, 1.0, 1.1], [0.1, 0.0, 0.1], [1.1, 0.0, 0.0]])
    correct = torch.tensor([[True, True, True], [False, False, False], [True, False, False]])
    out = AGPOAdvantage()(rewards, AdvantageContext(correct=correct))
    mixed = torch.tensor([2.2 / 3, -1.1 / 3, -1.1 / 3]) / (1.1 / math.sqrt(3) + EPS)
    torch.testing.assert_close(out.values, torch.stack([torch.ones(3), -torch.ones(3), mixed]))


@pytest.mark.parametrize(
    "rewards", [[[1.0, 0.0, 1.0, 0.0], [0.3, 0.9, 0.1, 0.2]], [[1.0, 0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0]]]
)
def test_agpo_pm_one_on_mixed_group_equals_zscore(rewards):
    # Oracle (docs/algorithms.md): on mixed groups AGPO is exactly GRPO's z-score.
    rewards = torch.tensor(rewards)
    torch.testing.assert_close(AGPOAdvantage()(rewards).values, GroupNormalized()(rewards).values)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"zero_variance": "skip"}, "'skip'"),
        ({"atol": -1.0}, "-1.0"),
        ({"r_max": 0.0, "r_min": 1.0}, "r_max=0.0"),
    ],
)
def test_agpo_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AGPOAdvantage(**kwargs)


# ---- found by the rule-based mutation check (tools/mutation_check.py lightning_grpo/advantages.py)


@pytest.mark.parametrize(
    "estimator",
    [GroupNormalized(), MeanCentered(), AGPOAdvantage(), AGPOAdvantage(zero_variance="drop")],
    ids=["GroupNormalized", "MeanCentered", "AGPO", "AGPO-drop"],
)
def test_keep_is_a_boolean_mask(estimator):
    out = estimator(AGPO_REWARDS)
    assert out.keep.dtype == torch.bool and out.keep.shape == AGPO_REWARDS.shape


def test_singleton_groups_keep_every_completion_as_a_boolean_mask():
    out = GroupNormalized(allow_singleton_groups=True)(torch.tensor([[1.0], [0.0], [0.5]]))
    assert out.keep.dtype == torch.bool and out.keep.tolist() == [[True], [True], [True]]
    assert out.metrics["zero_variance_frac"].item() == 0.0


def test_advantages_without_metrics_have_none():
    assert Advantages(values=torch.zeros(1, 2), keep=torch.ones(1, 2, dtype=torch.bool)).metrics == {}


def test_agpo_boundaries_atol_and_eps_zero_are_exact():
    # atol = 0 and eps = 0 are allowed: a group exactly at r_min / r_max is flat and gets ∓1; a mixed
    # group is z-scored by its std alone ([1, 0] → centred ±0.5, std 1/√2 → ±1/√2).
    out = AGPOAdvantage(atol=0.0, eps=0.0)(torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]))
    s = 0.5 * math.sqrt(2)
    torch.testing.assert_close(out.values, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [s, -s]]))
    with pytest.raises(ValueError, match="r_max=1.0, r_min=1.0"):
        AGPOAdvantage(r_max=1.0, r_min=1.0)
    with pytest.raises(ValueError, match="-0.1"):
        AGPOAdvantage(eps=-0.1)


@pytest.mark.parametrize("shape", [(2, 3, 4), (6,), (3, 1)])
def test_agpo_rewards_of_the_wrong_shape_are_refused_naming_it(shape):
    with pytest.raises(ValueError, match=str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        AGPOAdvantage()(torch.zeros(shape))
