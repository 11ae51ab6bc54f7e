"""The warped sampling distribution (``sampling_scores``) on logits with ties.

A model's float logits almost never tie, so a top-k that keeps exactly k tokens (dropping those tied
with the k-th) passed every test that samples from a real model. HF's ``TopKLogitsWarper`` keeps every
token whose score is not below the k-th largest; ours must too, or the fast sampler and HF draw from
different distributions. Logits here are quantised on purpose so that ties are everywhere.
"""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from lightning_grpo.sampling import SamplingParams, sampling_scores


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


@pytest.mark.parametrize("top_k, top_p, temperature", [(3, 1.0, 1.0), (5, 1.0, 0.7), (4, 0.8, 1.3), (0, 0.5, 1.0)])
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
