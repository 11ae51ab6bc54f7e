"""The sampling distribution (``sampling/distribution.py``): warped scores, ties included, and the exact draw.

A model's float logits almost never tie, so a top-k that keeps exactly k tokens (dropping those tied
with the k-th) passed every test that samples from a real model. HF's ``TopKLogitsWarper`` keeps every
token whose score is not below the k-th largest; ours must too, or the fast sampler and HF draw from
different distributions. Logits here are quantised on purpose so that ties are everywhere.
"""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from lightning_grpo.sampling import SamplingParams, sample_categorical, sampling_scores


def test_top_k_keeps_every_token_tied_with_the_kth() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0, 2.0, 0.5, 2.0]])  # [1, 6]: three tokens tie at the 2nd score
    scores = sampling_scores(logits, SamplingParams(top_k=2))
    kept = torch.isfinite(scores[0]).nonzero().flatten().tolist()
    assert kept == [0, 1, 3, 5]  # the k-th (2.0) and all its ties stay; 1.0 and 0.5 go
    torch.testing.assert_close(scores[0, kept], logits[0, kept])


def test_top_k_with_the_kth_tied_at_the_boundary_keeps_more_than_k() -> None:
    logits = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 3.0, 3.0, 2.0]])  # [2, 4]
    scores = sampling_scores(logits, SamplingParams(top_k=1))
    assert torch.isfinite(scores).sum(dim=1).tolist() == [4, 1]  # all four tie for first; a unique max
    scores = sampling_scores(logits, SamplingParams(top_k=2))
    assert torch.isfinite(scores).sum(dim=1).tolist() == [4, 3]


@pytest.mark.parametrize(
    "top_k, top_p, temperature", [(3, 1.0, 1.0), (5, 1.0, 0.7), (4, 0.8, 1.3), (0, 0.5, 1.0), (6, 1.0, 2.0)]
)
def test_warped_scores_equal_hf_warpers_on_quantised_logits(top_k: int, top_p: float, temperature: float) -> None:
    generator = torch.Generator().manual_seed(top_k * 10 + int(top_p * 10))
    logits = (torch.randn(64, 40, generator=generator) * 2).round() / 2  # [64, 40], steps of 0.5: many ties
    expected = logits / temperature
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    scores = sampling_scores(logits, SamplingParams(top_k=top_k, top_p=top_p, temperature=temperature))
    assert torch.equal(torch.isfinite(scores), torch.isfinite(expected))
    torch.testing.assert_close(scores, expected)
    if top_k:  # the rows where ties at the k-th keep more than k tokens are the point of the test
        assert (torch.isfinite(scores).sum(dim=1) > top_k).any()


def assert_fits(counts: torch.Tensor, probs: torch.Tensor) -> None:
    """Pearson chi-square of the counts against the probabilities (cells expecting < 5 draws pooled)."""
    expected = probs.double() * counts.sum()
    keep = expected >= 5
    observed = torch.cat([counts[keep], counts[~keep].sum().view(1)])
    wanted = torch.cat([expected[keep], expected[~keep].sum().view(1)])
    nonzero = wanted > 0
    chi2 = (((observed - wanted) ** 2)[nonzero] / wanted[nonzero]).sum().item()
    dof = max(int(nonzero.sum()) - 1, 1)
    # Mean dof, sd sqrt(2 dof): this bound is beyond the 99.99% quantile for every dof used here.
    assert chi2 < dof + 6 * (2 * dof) ** 0.5 + 10, (chi2, dof)


@pytest.mark.parametrize("vocab, block", [(7, 1), (23, 4), (50, 8), (1000, 256), (3000, 256)])
def test_sample_categorical_is_exact(vocab, block) -> None:
    generator = torch.Generator().manual_seed(vocab)
    probs = torch.rand(vocab, generator=generator) ** 3
    probs[torch.randperm(vocab, generator=generator)[: vocab // 4]] = 0  # some zero-probability entries
    probs[-1] = 0  # including the last one (the clamp must not land there)
    probs = probs / probs.sum()
    n = 40000
    torch.manual_seed(0)
    draws = sample_categorical(probs.expand(n, -1), block=block)
    counts = torch.bincount(draws, minlength=vocab).double()
    assert counts[probs == 0].sum() == 0 and draws.max() < vocab
    assert_fits(counts, probs)


def test_two_level_draw_takes_unnormalised_weights_and_reaches_the_last_entry():
    # 3,000 entries in blocks of 256 (11 full blocks and a tail of 184): the two-level path. The weights
    # are not normalised (they sum to 8) and the tail block holds most of the mass, on its last two
    # entries: a draw scaled by the wrong total, a phantom entry past the vocabulary or a clamp that
    # cuts the last entry off all change these frequencies.
    vocab = 3000
    weights = torch.full((vocab,), 1.0 / vocab)
    weights[-2:] = 3.5  # weights sum to 1 + 7 = 8
    weights[:5] = 0.0
    probs = weights / weights.sum()
    torch.manual_seed(1)
    draws = sample_categorical(weights.expand(40000, -1), block=256)
    counts = torch.bincount(draws, minlength=vocab).double()
    assert draws.max() < vocab and counts[:5].sum() == 0
    assert counts[-1] > 0.4 * 40000 and counts[-2] > 0.4 * 40000
    assert_fits(counts, probs)
