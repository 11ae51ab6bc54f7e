"""The Rollout (one scored batch of groups) and the GroupSampler that generates it.

The sampler runs the live policy in eval mode, without grad, with the KV cache, and returns G
completions per prompt in group-major order (completion i belongs to prompt i // G). Loss masks come
from the generated ids: every token up to and including the first EOS (any EOS id), zero after; a
completion with no EOS within the budget is truncated. Pad ids are never consulted (pad is often EOS).

Two backends draw from the same distribution (temperature, then top-k, then top-p, as HF ``generate``):

* ``hf`` (default, the reference for correctness): HF ``generate`` on the P·G repeated prompts.
* ``fast``: the sampler's own decode loop: one HF prefill per prompt whose KV cache is then shared by
  its G samples, decode steps by ``decode.StaticCacheDecoder`` (the same arithmetic as the model's
  ``forward`` over preallocated KV buffers, for Qwen3 / Qwen2 / Llama; other models step through the
  HF ``forward`` with a ``DynamicCache``), rows that have emitted an EOS dropped from the batch (their
  cache rows too), and inverse-CDF sampling (one uniform draw per row instead of
  ``torch.multinomial``'s one random number per vocabulary entry, which dominates a decode step on
  CPU with a 32k+ vocabulary). Greedy output equals ``hf``'s (tested). Sharded (FSDP2)
  policies always use ``hf``, which keeps the ranks in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor
from transformers import DynamicCache, GenerationConfig, PreTrainedModel

from lightning_grpo.decode import StaticCacheDecoder
from lightning_grpo.logprobs import position_ids_from_mask


@dataclass
class Rollout:
    """P prompts × G completions of one rank, scored. N = P·G rows, Tp prompt and Tc completion positions."""

    input_ids: Tensor  # [N, Tp + Tc] left-padded prompt followed by the completion
    attention_mask: Tensor  # [N, Tp + Tc] prompt mask, then the completion's loss mask
    completion_mask: Tensor  # [N, Tc] 1 up to and including the first EOS
    truncated: Tensor  # [N] bool: no EOS within max_new_tokens
    rewards: Tensor  # [N] weighted sum of the reward components
    reward_components: dict[str, Tensor]  # name -> [N]
    group_ids: Tensor  # [N] index of the prompt (group) within this rank's batch
    group_size: int
    prompt_length: int  # Tp
    temperature: float
    max_new_tokens: int
    correct: Tensor | None = None  # [N] bool, when a correctness reward is configured
    valid: Tensor | None = None  # [N] bool: False rows are kept for shape only and carry no loss
    prompts: list[str] = field(default_factory=list)  # [P]
    completions: list[str] = field(default_factory=list)  # [N]
    answers: list[str | None] = field(default_factory=list)  # [N] answers the correctness reward read
    golds: list[str] = field(default_factory=list)  # [P]
    stats: dict[str, float] = field(default_factory=dict)  # logged as-is: "time/generation_s", ...

    @property
    def completion_ids(self) -> Tensor:
        return self.input_ids[:, self.prompt_length :]  # [N, Tc]

    @property
    def num_groups(self) -> int:
        return self.input_ids.shape[0] // self.group_size

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(dim=1)  # [N]


def gather_groups(rollouts: list[Rollout], picks: list[tuple[int, int]], pad_id: int) -> Rollout:
    """A new rollout made of the groups ``picks`` = [(rollout index, group index)], re-padded.

    Prompts stay left-padded and completions right-padded to the widest of the picked rollouts.
    ``stats`` of all the rollouts are summed (they are times and counters).
    """
    g = rollouts[0].group_size
    tp = max(rollouts[k].prompt_length for k, _ in picks)
    tc = max(rollouts[k].completion_ids.shape[1] for k, _ in picks)
    ids, attn, cmask, rows_of = [], [], [], []
    for k, group in picks:
        r = rollouts[k]
        rows = slice(group * g, (group + 1) * g)
        left, right = tp - r.prompt_length, tc - r.completion_ids.shape[1]
        ids.append(torch.nn.functional.pad(r.input_ids[rows], (left, right), value=pad_id))
        attn.append(torch.nn.functional.pad(r.attention_mask[rows], (left, right), value=0))
        cmask.append(torch.nn.functional.pad(r.completion_mask[rows], (0, right), value=0))
        rows_of.append((r, rows))

    def cat(name: str) -> Tensor | None:
        parts = [getattr(r, name) for r, _ in rows_of]
        return None if parts[0] is None else torch.cat([p[rows] for p, (_, rows) in zip(parts, rows_of)])

    first = rollouts[0]
    stats: dict[str, float] = {}
    for r in rollouts:
        for key, value in r.stats.items():
            stats[key] = stats.get(key, 0.0) + value
    n = len(picks) * g
    return Rollout(
        input_ids=torch.cat(ids),
        attention_mask=torch.cat(attn),
        completion_mask=torch.cat(cmask),
        truncated=cat("truncated"),
        rewards=cat("rewards"),
        reward_components={
            name: torch.cat([r.reward_components[name][rows] for r, rows in rows_of]) for name in first.reward_components
        },
        group_ids=torch.arange(n, device=first.input_ids.device) // g,
        group_size=g,
        prompt_length=tp,
        temperature=first.temperature,
        max_new_tokens=first.max_new_tokens,
        correct=cat("correct"),
        valid=cat("valid"),
        prompts=[rollouts[k].prompts[group] for k, group in picks],
        completions=[c for r, rows in rows_of for c in r.completions[rows]],
        answers=[a for r, rows in rows_of for a in r.answers[rows]] if first.answers else [],
        golds=[rollouts[k].golds[group] for k, group in picks],
        stats=stats,
    )


def completion_mask_from_ids(completion_ids: Tensor, eos_ids: list[int]) -> tuple[Tensor, Tensor]:
    """Loss mask [N, Tc] (1 up to and including the first EOS) and truncated flags [N]."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))  # [N, Tc]
    has_eos = is_eos.any(dim=1)  # [N]
    first_eos = torch.where(has_eos, is_eos.int().argmax(dim=1), completion_ids.shape[1])  # [N]
    positions = torch.arange(completion_ids.shape[1], device=completion_ids.device)  # [Tc]
    mask = (positions.unsqueeze(0) <= first_eos.unsqueeze(1)).long()  # [N, Tc]
    return mask, ~has_eos


# Options of a checkpoint's generation config that change the sampling distribution, at their neutral value.
_NEUTRAL_GENERATION = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": 0,
    "min_p": 0.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
}


class GroupSampler:
    """Samples ``group_size`` completions per prompt with the KV cache (HF ``generate`` or ``fast``).

    ``temperature`` also scales the logits of every later log-prob (ALGORITHMS.md §1). ``top_k = 0``
    and ``top_p = 1`` sample from the full tempered distribution, so the sampler and the loss see the
    same policy; narrowing either makes the rollout slightly off-policy. ``backend``: see the module
    docstring.
    """

    def __init__(
        self,
        group_size: int = 8,
        max_new_tokens: int = 16,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        backend: Literal["hf", "fast"] = "hf",
    ) -> None:
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 (a group of one has no relative advantage), got {group_size}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if backend not in ("hf", "fast"):
            raise ValueError(f"backend must be 'hf' or 'fast', got {backend!r}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: off), got {top_k}")
        self.backend = backend
        self.group_size = group_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k

    def generation_config(
        self, eos_ids: list[int], pad_id: int, greedy: bool = False, model_defaults: GenerationConfig | None = None
    ) -> GenerationConfig:
        """The HF ``GenerationConfig`` of the ``hf`` backend.

        ``generate`` fills every option left unset from the checkpoint's ``generation_config.json``;
        options there that reshape the distribution (``repetition_penalty = 1.05``, ``min_p``, ...)
        would make the rollout silently off-policy, since log-probs use softmax(logits / T) only. Those
        that ``model_defaults`` sets are switched off here (see ``_NEUTRAL_GENERATION``).
        """
        neutral = {
            name: value
            for name, value in _NEUTRAL_GENERATION.items()
            if model_defaults is not None and getattr(model_defaults, name, None) not in (None, value)
        }
        return GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else self.temperature,
            top_p=None if greedy else self.top_p,
            top_k=None if greedy else self.top_k,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            use_cache=True,
            **neutral,
        )

    @torch.no_grad()
    def sample(
        self,
        policy: PreTrainedModel,
        prompt_ids: Tensor,  # [P, Tp] left-padded
        prompt_mask: Tensor,  # [P, Tp]
        eos_ids: list[int],
        pad_id: int,
        num_samples: int | None = None,
        greedy: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns sequences [P·G, Tp + Tc], completion mask [P·G, Tc] and truncated flags [P·G]."""
        g = num_samples or self.group_size
        if self.backend == "fast" and not _is_sharded(policy):
            was_training = policy.training
            policy.eval()
            try:
                sequences = self._decode(policy, prompt_ids, prompt_mask, eos_ids, pad_id, g, greedy)
            finally:
                policy.train(was_training)
            completion_mask, truncated = completion_mask_from_ids(sequences[:, prompt_ids.shape[1] :], eos_ids)
            return sequences, completion_mask, truncated
        ids = prompt_ids.repeat_interleave(g, dim=0)  # [N, Tp]
        mask = prompt_mask.repeat_interleave(g, dim=0)  # [N, Tp]
        was_training = policy.training
        policy.eval()
        try:
            sequences = policy.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=self.generation_config(
                    eos_ids, pad_id, greedy, getattr(policy, "generation_config", None)
                ),
                synced_gpus=_is_sharded(policy),
            )  # [N, Tp + Tc]
        finally:
            policy.train(was_training)
        completion_mask, truncated = completion_mask_from_ids(sequences[:, prompt_ids.shape[1] :], eos_ids)
        return sequences, completion_mask, truncated

    def _decode(
        self,
        policy: PreTrainedModel,
        prompt_ids: Tensor,  # [P, Tp] left-padded
        prompt_mask: Tensor,  # [P, Tp]
        eos_ids: list[int],
        pad_id: int,
        g: int,
        greedy: bool,
    ) -> Tensor:
        """The ``fast`` backend: [P·G, Tp + Tc] like ``generate`` (pad after the EOS, Tc = steps run)."""
        p, tp = prompt_ids.shape
        n, device = p * g, prompt_ids.device
        cache = DynamicCache(config=policy.config)
        positions = position_ids_from_mask(prompt_mask)  # [P, Tp]
        padded = not bool(prompt_mask.all())  # without left padding every forward is plain causal: no mask
        logits = policy(
            input_ids=prompt_ids, attention_mask=prompt_mask if padded else None, position_ids=positions,
            past_key_values=cache, use_cache=True, logits_to_keep=1,
        ).logits[:, -1]  # [P, V]: one prefill per prompt ...
        logits = logits.repeat_interleave(g, dim=0)  # [N, V]
        next_position = positions[:, -1:].repeat_interleave(g, dim=0) + 1  # [N, 1]
        mask = torch.cat(
            [prompt_mask.repeat_interleave(g, dim=0), prompt_mask.new_ones(n, self.max_new_tokens)], dim=1
        )  # [N, Tp + max_new_tokens]: generated tokens are attended to
        lean = None
        if StaticCacheDecoder.supports(policy):
            lean = StaticCacheDecoder(policy, cache, g, tp + self.max_new_tokens)
        if lean is None:
            cache.batch_repeat_interleave(g)  # ... shared by its G samples (the lean decoder copies it G times)
        attend = mask.bool() if padded else None  # [N, Tp + max_new_tokens]
        tokens = torch.full((n, self.max_new_tokens), pad_id, dtype=prompt_ids.dtype, device=device)  # [N, Tc]
        rows = torch.arange(n, device=device)  # row of `tokens` for each row still in the batch
        eos = torch.tensor(eos_ids, device=device)
        steps = 0
        for step in range(self.max_new_tokens):
            token = self._next_token(logits, greedy)  # [n]
            tokens[rows, step] = token
            steps = step + 1
            if step + 1 == self.max_new_tokens:
                break
            running = ~torch.isin(token, eos)  # [n]
            if not bool(running.all()):
                if not bool(running.any()):
                    break
                keep = running.nonzero().squeeze(1)  # drop finished rows, and their cache rows
                if lean is None:
                    cache.batch_select_indices(keep)
                else:
                    lean.select(keep)
                rows, token, next_position = rows[keep], token[keep], next_position[keep]
                mask = mask[keep]
                attend = None if attend is None else attend[keep]
            if lean is not None:  # the same arithmetic as the HF forward, without its per-call overhead
                logits = lean.step(token, next_position.squeeze(1), tp + step, attend)  # [n, V]
            else:
                logits = policy(
                    input_ids=token.unsqueeze(1), attention_mask=mask[:, : tp + step + 1] if padded else None,
                    position_ids=next_position, past_key_values=cache, use_cache=True, logits_to_keep=1,
                ).logits[:, -1]  # [n, V]
            next_position = next_position + 1
        return torch.cat([prompt_ids.repeat_interleave(g, dim=0), tokens[:, :steps]], dim=1)  # [N, Tp + Tc]

    def _next_token(self, logits: Tensor, greedy: bool) -> Tensor:
        """One token per row [n]: argmax, or a draw from softmax(logits / T) after top-k and top-p."""
        if greedy:
            return logits.argmax(dim=-1)
        return sample_categorical(self.sampling_scores(logits).softmax(dim=-1))

    def sampling_scores(self, logits: Tensor) -> Tensor:
        """float32 logits / T with the entries top-k and top-p exclude set to -inf (HF's warper order)."""
        scores = logits.float()  # [n, V]
        if self.temperature != 1.0:
            scores = scores / self.temperature
        if 0 < self.top_k < scores.shape[-1]:
            kth = torch.topk(scores, self.top_k, dim=-1).values[:, -1:]  # [n, 1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, dim=-1)  # ascending, as HF's TopPLogitsWarper
            remove = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= 1 - self.top_p
            remove[:, -1] = False  # always keep the most likely token
            scores = scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        return scores


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


def _is_sharded(model: torch.nn.Module) -> bool:
    """True when parameters are DTensors (FSDP2): generation then needs every rank in each step."""
    return dist.is_available() and dist.is_initialized() and any(
        type(p).__name__ == "DTensor" for p in model.parameters()
    )
