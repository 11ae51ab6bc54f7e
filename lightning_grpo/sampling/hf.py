"""``HFSampler``: HF ``generate`` on the P·n repeated prompts, the reference for correctness tests.

Sharded (FSDP2) policies generate with ``synced_gpus`` so the ranks stay in step; the data module
gathers the parameters once per rollout around the call (``sharding.gathered_for_generation``).
"""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor, nn
from transformers import GenerationConfig

from lightning_grpo.sampling.base import Sampler, SamplingParams

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


def generation_config(
    params: SamplingParams, eos_ids: list[int], pad_id: int, model_defaults: GenerationConfig | None = None
) -> GenerationConfig:
    """The ``GenerationConfig`` that draws ``params``'s distribution and nothing else.

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
    greedy = params.greedy
    return GenerationConfig(
        do_sample=not greedy,
        temperature=None if greedy else params.temperature,
        top_p=None if greedy else params.top_p,
        top_k=None if greedy else params.top_k,
        max_new_tokens=params.max_new_tokens,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        use_cache=True,
        **neutral,
    )


def is_sharded(model: nn.Module) -> bool:
    """True when parameters are DTensors (FSDP2): generation then needs every rank in each step."""
    return dist.is_available() and dist.is_initialized() and any(type(p).__name__ == "DTensor" for p in model.parameters())


class HFSampler(Sampler):
    """Samples with ``policy.generate`` (KV cache, the checkpoint's distribution-changing defaults off)."""

    def generate(
        self,
        policy: nn.Module,
        prompt_ids: Tensor,  # [P, Tp] left-padded
        prompt_mask: Tensor,  # [P, Tp]
        params: SamplingParams,
        eos_ids: list[int],
        pad_id: int,
    ) -> Tensor:
        n = params.num_samples
        return policy.generate(
            input_ids=prompt_ids.repeat_interleave(n, dim=0),  # [P·n, Tp]
            attention_mask=prompt_mask.repeat_interleave(n, dim=0),  # [P·n, Tp]
            generation_config=generation_config(params, eos_ids, pad_id, getattr(policy, "generation_config", None)),
            synced_gpus=is_sharded(policy),
        )  # [P·n, Tp + Tc]
