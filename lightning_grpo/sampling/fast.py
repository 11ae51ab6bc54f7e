"""``FastSampler``: the project's own decode loop, the default sampler.

Same distribution as HF ``generate`` (greedy ids equal, sampled tokens tested against HF's warpers),
less work per token:

* one HF prefill per prompt whose KV cache is then shared by its n samples (``generate`` prefills
  the P·n repeated prompts);
* decode steps by :class:`~lightning_grpo.sampling.static_cache.StaticCacheDecoder` (the model's own
  arithmetic over preallocated KV buffers) for Qwen3 / Qwen2 / Llama with plain linear layers; other
  models step through the HF ``forward`` with a ``DynamicCache``, and the reason is logged once;
* rows that have emitted an EOS are dropped from the batch (and their cache rows);
* an inverse-CDF draw (one uniform number per row instead of ``torch.multinomial``'s one per
  vocabulary entry, which dominates a decode step on CPU with a 32k+ vocabulary).

Where the loop cannot run at all it hands the call to :class:`~lightning_grpo.sampling.hf.HFSampler`
and logs why once: sharded (FSDP2) policies, whose ranks must generate in step, and encoder-decoder
or non-generating models.
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from transformers import DynamicCache

from lightning_grpo.logprobs import cache_keyword, position_ids_from_mask
from lightning_grpo.sampling.base import Sampler, SamplingParams
from lightning_grpo.sampling.distribution import next_token
from lightning_grpo.sampling.hf import HFSampler, is_sharded
from lightning_grpo.sampling.static_cache import StaticCacheDecoder


def fast_loop_unsupported_reason(policy: nn.Module) -> str | None:
    """Why the fast decode loop cannot run ``policy`` (None: it can)."""
    if is_sharded(policy):
        return "the policy is sharded (FSDP2): HF generate keeps the ranks in step"
    config = getattr(policy, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    if not callable(getattr(policy, "generate", None)):
        return "the model cannot generate"
    return None


class FastSampler(Sampler):
    """Shared prefill, lean static-cache decode steps, finished rows dropped (see the module docstring).

    Args:
        static_cache: use the lean decoder where it supports the model (False: always the HF forward,
            still with the shared prefill and dropped rows).
    """

    def __init__(self, static_cache: bool = True) -> None:
        self.static_cache = static_cache
        self._fallback = HFSampler()
        self._reported: set[str] = set()

    def _report(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            rank_zero_info(message)

    def generate(
        self,
        policy: nn.Module,
        prompt_ids: Tensor,  # [P, Tp] left-padded
        prompt_mask: Tensor,  # [P, Tp]
        params: SamplingParams,
        eos_ids: list[int],
        pad_id: int,
    ) -> Tensor:
        reason = fast_loop_unsupported_reason(policy)
        if reason is not None:
            self._report(f"FastSampler: sampling with HF generate because {reason}")
            return self._fallback.generate(policy, prompt_ids, prompt_mask, params, eos_ids, pad_id)
        return self._decode(policy, prompt_ids, prompt_mask, params, eos_ids, pad_id)

    def _lean_decoder(self, policy: nn.Module, cache: DynamicCache, repeat: int, capacity: int) -> StaticCacheDecoder | None:
        if not self.static_cache:
            return None
        reason = StaticCacheDecoder.unsupported_reason(policy)
        if reason is not None:
            self._report(f"FastSampler: decode steps through the HF forward (slower) because of {reason}")
            return None
        return StaticCacheDecoder(policy, cache, repeat, capacity)

    def _decode(
        self,
        policy: nn.Module,
        prompt_ids: Tensor,  # [P, Tp] left-padded
        prompt_mask: Tensor,  # [P, Tp]
        params: SamplingParams,
        eos_ids: list[int],
        pad_id: int,
    ) -> Tensor:
        """[P·n, Tp + Tc] like ``generate`` (pad after the EOS, Tc = steps run)."""
        (p, tp), g, budget = prompt_ids.shape, params.num_samples, params.max_new_tokens
        n, device = p * g, prompt_ids.device
        cache = DynamicCache(config=policy.config)
        cache_kw = {cache_keyword(policy): cache}
        positions = position_ids_from_mask(prompt_mask)  # [P, Tp]
        padded = not bool(prompt_mask.all())  # without left padding every forward is plain causal: no mask
        logits = policy(
            input_ids=prompt_ids, attention_mask=prompt_mask if padded else None, position_ids=positions,
            use_cache=True, logits_to_keep=1, **cache_kw,
        ).logits[:, -1]  # [P, V]: one prefill per prompt ...
        logits = logits.repeat_interleave(g, dim=0)  # [N, V]
        next_position = positions[:, -1:].repeat_interleave(g, dim=0) + 1  # [N, 1]
        mask = torch.cat(
            [prompt_mask.repeat_interleave(g, dim=0), prompt_mask.new_ones(n, budget)], dim=1
        )  # [N, Tp + budget]: generated tokens are attended to
        lean = self._lean_decoder(policy, cache, g, tp + budget)
        if lean is None:
            cache.batch_repeat_interleave(g)  # ... shared by its n samples (the lean decoder copies it n times)
        attend = mask.bool() if padded else None  # [N, Tp + budget]
        tokens = torch.full((n, budget), pad_id, dtype=prompt_ids.dtype, device=device)  # [N, Tc]
        rows = torch.arange(n, device=device)  # row of `tokens` for each row still in the batch
        eos = torch.tensor(eos_ids, device=device)
        steps = 0
        for step in range(budget):
            token = next_token(logits, params)  # [n]
            tokens[rows, step] = token
            steps = step + 1
            if step + 1 == budget:
                break
            running = ~torch.isin(token, eos)  # [n]
            if not bool(running.all()):
                if not bool(running.any()):
                    break
                keep = running.nonzero().squeeze(1)  # drop finished rows, and their cache rows
                if lean is None:
                    cache.batch_select_indices(keep)
                    mask = mask[keep]
                else:
                    lean.select(keep)
                rows, token, next_position = rows[keep], token[keep], next_position[keep]
                attend = None if attend is None else attend[keep]
            if lean is not None:  # the same arithmetic as the HF forward, without its per-call overhead
                logits = lean.step(token, next_position.squeeze(1), tp + step, attend)  # [n, V]
            else:
                logits = policy(
                    input_ids=token.unsqueeze(1), attention_mask=mask[:, : tp + step + 1] if padded else None,
                    position_ids=next_position, use_cache=True, logits_to_keep=1, **cache_kw,
                ).logits[:, -1]  # [n, V]
            next_position = next_position + 1
        return torch.cat([prompt_ids.repeat_interleave(g, dim=0), tokens[:, :steps]], dim=1)  # [N, Tp + Tc]
