"""GTPO (docs/algorithms.md §5): its conflict tokens on hand-made token sequences, its loss, options and gradient."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_grpo.advantages import MeanCentered
from lightning_grpo.objectives import GTPO, RGRA, Normalizers, ObjectiveInputs, conflict_tokens
from tests.objective_batches import F64, loss_and_grad, t


def conflicts(ids, lengths, adv, groups=None):
    ids = torch.tensor(ids)
    t = ids.shape[1]
    mask = (torch.arange(t).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).float()
    groups = torch.zeros(len(adv), dtype=torch.long) if groups is None else torch.tensor(groups)
    return conflict_tokens(ids, mask, torch.tensor(adv), groups).int().tolist()


def test_shared_prefix_only_leading_run():
    # + [5, 6, 7, 1]   shares 5, 6 with the negative one, then 7 ≠ 8; the later 1 = 1 at position 3
    # − [5, 6, 8, 1]   is not in the leading run but is the trailing run (both end at position 3).
    # Drop the common last token to see the prefix alone:
    # + [5, 6, 7, 1]
    # − [5, 6, 8, 2]   → leading run {0, 1} in both; trailing: 1 ≠ 2, nothing.
    assert conflicts([[5, 6, 7, 1], [5, 6, 8, 2]], [4, 4], [1.0, -1.0]) == [[1, 1, 0, 0], [1, 1, 0, 0]]
    # A match after a mismatch is not leading: position 2 (9 = 9) follows 7 ≠ 8 at position 1.
    assert conflicts([[5, 7, 9, 1], [5, 8, 9, 2]], [4, 4], [1.0, -1.0]) == [[1, 0, 0, 0], [1, 0, 0, 0]]


def test_shared_suffix_aligned_at_last_token():
    # Different lengths: + [1, 2, 3, 9, 4] (5 tokens), − [7, 3, 9, 4, pad] (4 tokens).
    # Right-aligned at their last loss token: + ... 3 9 4 / − ... 3 9 4 → trailing run of 3 tokens:
    # positions 2, 3, 4 in the positive, 1, 2, 3 in the negative; then 2 ≠ 7 stops it.
    # Left-aligned nothing matches (1 ≠ 7).
    out = conflicts([[1, 2, 3, 9, 4], [7, 3, 9, 4, 0]], [5, 4], [0.5, -0.5])
    assert out == [[0, 0, 1, 1, 1], [0, 1, 1, 1, 0]]


def test_prefix_and_suffix_together_and_multiple_members():
    # Group of five (same as tests/test_objectives_zoo.py::test_gtpo_hand_values):
    # c0 + [5, 6, 7, 9]  c1 − [5, 6, 8, 9]  c2 + [1, 2, 3, pad]  c3 − [4, 2, 3, pad]  c4 0 [5, 6, 7, 9]
    # Leading: c0 and c1 share 5, 6 (positions 0, 1); c2's 1 and c3's 4 match nobody at position 0.
    # Trailing (right-aligned): last tokens 9 (c0, c1) and 3 (c2, c3); c0's 9 matches c1's 9, c0's 7
    # at the second-to-last matches neither 8 (c1) nor 2 (c3). c2 and c3 share "2 3" at the end,
    # then 1 vs 4 (and 6, 5 of the others' aligned positions) stops it.
    # c4 has Â = 0: never conflicts, and does not make c1 conflict either.
    ids = [[5, 6, 7, 9], [5, 6, 8, 9], [1, 2, 3, 0], [4, 2, 3, 0], [5, 6, 7, 9]]
    out = conflicts(ids, [4, 4, 3, 3, 4], [0.5, -0.5, 0.5, -0.5, 0.0])
    assert out == [[1, 1, 0, 1], [1, 1, 0, 1], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]


def test_padding_never_conflicts():
    # Pad id 0 equals EOS-like filler in both rows at positions 2, 3 but they are not loss tokens.
    # Row 0 + [3, 0, 0, 0] (1 token), row 1 − [4, 0, 0, 0] (1 token): position 0 differs; the
    # shared zeros are padding → no conflict anywhere (also not in the right-aligned pass, where
    # the only valid tokens are 3 vs 4).
    assert conflicts([[3, 0, 0, 0], [4, 0, 0, 0]], [1, 1], [1.0, -1.0]) == [[0] * 4, [0] * 4]
    # A valid token never matches a padded position of another row: + [1, 2, 3] (3 tokens),
    # − [1, 2, 3] with only 2 loss tokens. Leading run: positions 0, 1 (position 2 of the negative is
    # padding). Trailing: + ends "2 3", − ends "1 2": 3 ≠ 2 → nothing.
    assert conflicts([[1, 2, 3], [1, 2, 3]], [3, 2], [1.0, -1.0]) == [[1, 1, 0], [1, 1, 0]]
    # An empty completion (mask all 0) conflicts nowhere, and does not break others' runs.
    assert conflicts([[1, 2], [1, 2], [1, 2]], [2, 0, 2], [1.0, -1.0, -1.0]) == [[1, 1], [0, 0], [1, 1]]


def test_same_sign_does_not_conflict():
    assert conflicts([[1, 2, 3], [1, 2, 3]], [3, 3], [1.0, 2.0]) == [[0] * 3, [0] * 3]
    assert conflicts([[1, 2, 3], [1, 2, 3]], [3, 3], [-1.0, -2.0]) == [[0] * 3, [0] * 3]


def test_groups_do_not_mix():
    # Rows 0, 1 are group 0 (+, −) and share nothing; rows 2, 3 are group 1 (+, −), share nothing.
    # Row 0 and row 3 are identical (opposite signs) but in different groups → no conflict.
    ids = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 2, 3]]
    assert conflicts(ids, [3, 3, 3, 3], [1.0, -1.0, 1.0, -1.0], groups=[0, 0, 1, 1]) == [[0] * 3] * 4
    # Same ids, all one group: rows 0 (+) and 3 (−) now conflict on every token.
    out = conflicts(ids, [3, 3, 3, 3], [1.0, -1.0, 1.0, -1.0], groups=[0, 0, 0, 0])
    assert out == [[1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1]]


def test_rollout_token_weights():
    # + [5, 6, 7, 1] and − [5, 6, 8, 2]: conflicts {0, 1} in each (see the first test).
    # Positive: δ = [2, 2, 1, 1] / max(1, 2) = [1, 1, .5, .5]; negative: δ = [0, 0, 1, 1] / 2.
    # A third, unrelated completion with Â = 0 keeps weight 1 (÷ max(1, 0) = 1), zero on padding.
    ids = torch.tensor([[5, 6, 7, 1], [5, 6, 8, 2], [3, 3, 3, 3]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]])
    adv = torch.tensor([1.0, -1.0, 0.0])
    groups = torch.zeros(3, dtype=torch.long)
    weights = GTPO().rollout_token_weights(ids, mask, adv, groups)
    expected = torch.tensor([[1.0, 1.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 1.0, 0.0]])
    torch.testing.assert_close(weights, expected)
    # Without the division, and with w_pos = 3, w_neg = 0.5:
    weights = GTPO(w_pos=3.0, w_neg=0.5, conflict_norm=False).rollout_token_weights(ids, mask, adv, groups)
    expected = torch.tensor([[3.0, 3.0, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    torch.testing.assert_close(weights, expected)


def test_token_in_both_runs_weighted_once():
    # Identical + and − completions: every token is in the leading and the trailing run; the weight
    # is w_pos once (the reference code would give w_pos² = 4), divided by the 3 conflicts.
    ids = torch.tensor([[1, 2, 3], [1, 2, 3]])
    mask = torch.ones(2, 3)
    weights = GTPO().rollout_token_weights(ids, mask, torch.tensor([1.0, -1.0]), torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(weights, torch.tensor([[2 / 3] * 3, [0.0] * 3]))


# --------------------------------------------------------------------------------------- the loss


def gtpo_group():
    # One group of five (conflicts derived above):
    # c0 + [5, 6, 7, 9] conflicts {0, 1, 3}   c1 − [5, 6, 8, 9] conflicts {0, 1, 3}
    # c2 + [1, 2, 3, .] conflicts {1, 2}      c3 − [4, 2, 3, .] conflicts {1, 2}   c4 (Â = 0) none
    ids = torch.tensor([[5, 6, 7, 9], [5, 6, 8, 9], [1, 2, 3, 0], [4, 2, 3, 0], [5, 6, 7, 9]])
    mask = t([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.5]])
    adv = MeanCentered()(rewards).values.reshape(-1).to(F64)  # [0.5, −0.5, 0.5, −0.5, 0]
    groups = torch.zeros(5, dtype=torch.long)
    return ids, mask, adv, groups


def test_gtpo_hand_values():
    ids, mask, adv, groups = gtpo_group()
    objective = GTPO()
    assert not objective.needs_reference
    weights = objective.rollout_token_weights(ids, mask, adv, groups)
    # δ / max(1, #conflicts): c0 [2, 2, 1, 2]/3, c1 [0, 0, 1, 0]/3, c2 [1, 2, 2, 0]/2, c3 [1, 0, 0, 0]/2, c4 1
    expected_w = t([[2, 2, 1, 2], [0, 0, 1, 0], [1.5, 3, 3, 0], [1.5, 0, 0, 0], [3, 3, 3, 3]]) / 3
    torch.testing.assert_close(weights, expected_w)
    # Mean entropies H̄ = [0.5, 0.9, 0.2, 0.0, 0.3] (padding carries 99, ignored). c1: 0.9 > τ = 0.7 →
    # filtered (Â = 0). Others: Â − 0.1 H̄ → c0 0.45, c2 0.48, c3 −0.5, c4 −0.03.
    entropy = t([[0.5] * 4, [0.9] * 4, [0.2, 0.2, 0.2, 99.0], [0.0, 0.0, 0.0, 99.0], [0.3] * 4])
    shaped = [0.45, 0.0, 0.48, -0.5, -0.03]
    # L_i = −Â'_i Σ_t w_t / |o_i|:
    #   c0: Σw = 7/3, |o| = 4 → −0.45·(7/3)/4 = −0.2625
    #   c1: Â' = 0 → 0
    #   c2: Σw = (1 + 2 + 2)/2 = 2.5, |o| = 3 → −0.48·2.5/3 = −0.4
    #   c3: Σw = 0.5, |o| = 3 → +0.5·0.5/3 = 0.083333
    #   c4: Σw = 4, |o| = 4 → +0.03
    # sum = −0.549167, mean over n = 5 → −0.1098333
    per_seq = -0.2625 + 0.0 - 0.4 + 0.5 * 0.5 / 3 + 0.03
    norm = Normalizers(num_sequences=5, num_tokens=18, max_length=4)
    logp = (-torch.ones(5, 4, dtype=F64)).requires_grad_(True)
    inputs = ObjectiveInputs(logp=logp, old_logp=logp.detach(), advantages=adv, mask=mask, normalizers=norm,
                             entropy=entropy, completion_ids=ids, group_ids=groups, token_weights=weights)
    loss, grad, metrics = loss_and_grad(objective, inputs, logp)
    assert loss.item() == pytest.approx(per_seq / 5)
    # ∂L/∂logp_t = −Â'_i w_t / |o_i| / n
    lengths = t([4, 4, 3, 3, 4])
    expected_grad = -t(shaped).unsqueeze(1) * expected_w / lengths.unsqueeze(1) / 5 * mask
    torch.testing.assert_close(grad, expected_grad)
    assert metrics["filtered_frac"].item() == pytest.approx(1 / 5)
    assert metrics["mean_entropy"].item() == pytest.approx((0.5 + 0.9 + 0.2 + 0.0 + 0.3) / 5)
    # conflicts: 3 + 3 + 2 + 2 + 0 = 10 of 18 loss tokens
    assert metrics["conflict_token_frac"].item() == pytest.approx(10 / 18)
    # "sum" aggregation (the reference code): no division by n
    loss_sum, _, _ = loss_and_grad(GTPO(completion_reduction="sum"), inputs, logp)
    assert loss_sum.item() == pytest.approx(per_seq)


def test_gtpo_plain_equals_on_policy_reinforce():
    # Oracle: w_pos = w_neg = 1, λ = 0, τ = ∞, no conflict division → every weight is 1 and GTPO is
    # REINFORCE with the mean-centred advantage: RGRA(β = 0) on the same advantages, same gradient.
    ids, mask, adv, groups = gtpo_group()
    objective = GTPO(w_pos=1.0, w_neg=1.0, entropy_coef=0.0, entropy_threshold=math.inf, conflict_norm=False)
    weights = objective.rollout_token_weights(ids, mask, adv, groups)
    torch.testing.assert_close(weights, mask)
    gen = torch.Generator().manual_seed(6)
    logp0 = -torch.rand(5, 4, generator=gen, dtype=F64)
    entropy = torch.rand(5, 4, generator=gen, dtype=F64) * 5
    norm = Normalizers(num_sequences=5, num_tokens=18, max_length=4)
    results = []
    for obj in (objective, RGRA(beta=0.0)):
        logp = logp0.clone().requires_grad_(True)
        inputs = ObjectiveInputs(logp=logp, old_logp=logp.detach(), advantages=adv, mask=mask, normalizers=norm,
                                 entropy=entropy, token_weights=weights)
        results.append(loss_and_grad(obj, inputs, logp))
    torch.testing.assert_close(results[0][1], results[1][1])
    # value: −(1/n) Σ Â_i (ρ̃ = 1) = 0 for mean-centred advantages of one whole group
    assert results[0][0].item() == pytest.approx(0.0, abs=1e-12)


def test_gtpo_needs_entropy():
    ids, mask, adv, groups = gtpo_group()
    logp = torch.zeros(5, 4, dtype=F64, requires_grad=True)
    inputs = ObjectiveInputs(logp=logp, old_logp=logp.detach(), advantages=adv, mask=mask,
                             normalizers=Normalizers(5, 18, 4))
    with pytest.raises(ValueError, match="entropy"):
        GTPO()(inputs)


@pytest.mark.parametrize(
    "options, conflict_weights",
    [
        # w_pos / w_neg on conflict tokens, each completion's weights ÷ max(1, #conflicts) unless conflict_norm off
        (dict(w_pos=3.0, w_neg=0.5), None),
        (dict(w_pos=3.0, w_neg=0.5, conflict_norm=False), None),
        (dict(w_pos=1.0, w_neg=1.0, completion_reduction="sum"), None),
        (dict(entropy_threshold=0.4, entropy_coef=0.5, completion_reduction="sum"), None),
        # c0's mean entropy is exactly τ = 0.5: filtered only above τ (H̄ > τ), so c0 is kept
        (dict(entropy_threshold=0.5, entropy_coef=0.2), None),
    ],
)
def test_gtpo_options_gradient(options, conflict_weights):
    # The group of gtpo_group(): conflict positions c0 {0, 1, 3}, c1 {0, 1, 3}, c2 {1, 2}, c3 {1, 2}, c4 none.
    ids, mask, adv, groups = gtpo_group()
    objective = GTPO(**options)
    w_pos, w_neg = objective.w_pos, objective.w_neg
    conflicts = [[0, 1, 3], [0, 1, 3], [1, 2], [1, 2], []]
    weights = torch.ones(5, 4, dtype=F64)
    for i, positions in enumerate(conflicts):
        for p in positions:
            weights[i, p] = w_pos if adv[i] > 0 else w_neg
        if objective.conflict_norm:
            weights[i] /= max(1, len(positions))
    weights = weights * mask
    torch.testing.assert_close(objective.rollout_token_weights(ids, mask, adv, groups), weights)
    entropy = t([[0.5] * 4, [0.9] * 4, [0.2, 0.2, 0.2, 99.0], [0.0, 0.0, 0.0, 99.0], [0.3] * 4])
    mean_h = t([0.5, 0.9, 0.2, 0.0, 0.3])
    shaped = torch.where(mean_h > objective.entropy_threshold, torch.zeros(5, dtype=F64), adv - objective.entropy_coef * mean_h)
    norm = Normalizers(num_sequences=5, num_tokens=18, max_length=4)
    logp = (-torch.ones(5, 4, dtype=F64)).requires_grad_(True)
    inputs = ObjectiveInputs(logp=logp, old_logp=logp.detach(), advantages=adv, mask=mask, normalizers=norm,
                             entropy=entropy, completion_ids=ids, group_ids=groups, token_weights=weights)
    loss, grad, metrics = loss_and_grad(objective, inputs, logp)
    n = 1.0 if objective.completion_reduction == "sum" else 5.0
    lengths = mask.sum(1, keepdim=True)
    torch.testing.assert_close(grad, -shaped.unsqueeze(1) * weights / lengths / n)
    assert loss.item() == pytest.approx((-shaped * (weights.sum(1) / lengths.squeeze(1))).sum().item() / n)
    assert metrics["filtered_frac"].item() == pytest.approx((mean_h > objective.entropy_threshold).double().mean().item())
