"""GTPO's conflict tokens on hand-made token sequences (docs/algorithms.md §5)."""

from __future__ import annotations

import torch

from lightning_grpo.objectives import GTPO, conflict_tokens


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
