"""The sampling distribution of the project's own decode loop: warped scores and an exact categorical draw.

``sampling_scores`` applies temperature, then top-k, then top-p, in HF ``generate``'s order and with
its tie rules, so the fast sampler draws from the same distribution as the HF one (tested against
HF's warpers). ``sample_categorical`` draws one index per row by inverting the CDF.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_grpo.sampling.base import SamplingParams


def sampling_scores(logits: Tensor, params: SamplingParams) -> Tensor:
    """float32 logits [n, V] / T with the entries top-k and top-p exclude set to -inf (HF's warper order)."""
    scores = logits.float()  # [n, V]
    if params.temperature != 1.0:
        scores = scores / params.temperature
    if 0 < params.top_k < scores.shape[-1]:
        kth = torch.topk(scores, params.top_k, dim=-1).values[:, -1:]  # [n, 1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1)  # ascending, as HF's TopPLogitsWarper
        remove = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= 1 - params.top_p
        remove[:, -1] = False  # always keep the most likely token
        scores = scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return scores


def next_token(logits: Tensor, params: SamplingParams) -> Tensor:
    """One token per row [n]: the argmax when greedy, else a draw from the warped distribution."""
    if params.greedy:
        return logits.argmax(dim=-1)
    return sample_categorical(sampling_scores(logits, params).softmax(dim=-1))


def sample_categorical(probs: Tensor, block: int = 256) -> Tensor:
    """One index per row of ``probs`` [n, V] (non-negative weights), drawn by inversion of the CDF.

    Exact sampling with one uniform number per level and row; ``torch.multinomial`` draws one random
    number per vocabulary entry, which costs more than the model's decode step on CPU with a large
    vocabulary (it is kept for small ones, where it is cheaper), and a flat cumulative sum over V is
    sequential. So two levels: pick a block of ``block`` entries by the CDF of the block sums, then an
    entry within it by the CDF of its weights (P(i) = S_b / S · w_i / S_b = w_i / S). CDFs are
    float64; an entry (or block) of weight 0 has an empty CDF interval and is never returned; a draw
    at the very top of the last interval (probability ~2⁻⁵³) is clamped into the vocabulary.
    """
    n, vocab = probs.shape
    if vocab <= 4 * block:
        return torch.multinomial(probs, 1).squeeze(1)
    full = vocab // block
    weights = probs.float()  # [n, V]
    sums = weights[:, : full * block].view(n, full, block).sum(dim=-1)  # [n, K] (a view: no copy)
    if full * block < vocab:
        sums = torch.cat([sums, weights[:, full * block :].sum(dim=-1, keepdim=True)], dim=1)  # the short tail block
    draws = torch.rand(n, 2, dtype=torch.float64, device=probs.device)  # [n, 2]
    block_cdf = sums.double().cumsum(dim=-1)  # [n, K']
    chosen = torch.searchsorted(block_cdf, draws[:, :1] * block_cdf[:, -1:], right=True)  # [n, 1]
    chosen = chosen.clamp_(max=block_cdf.shape[1] - 1)
    index = chosen * block + torch.arange(block, device=probs.device)  # [n, b] entries of the chosen block
    inside = index < vocab
    inner_weights = weights.gather(1, index.clamp(max=vocab - 1)) * inside  # [n, b]: 0 past the vocabulary
    inner_cdf = inner_weights.double().cumsum(dim=-1)  # [n, b]
    inner = torch.searchsorted(inner_cdf, draws[:, 1:] * inner_cdf[:, -1:], right=True).clamp_(max=block - 1)
    return index.gather(1, inner).squeeze(1).clamp_(max=vocab - 1)
