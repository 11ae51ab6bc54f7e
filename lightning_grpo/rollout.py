"""The Rollout (one scored batch of groups) and the GroupSampler that generates it.

The sampler runs the live policy in eval mode, without grad, with the KV cache, and returns G
completions per prompt in group-major order (completion i belongs to prompt i // G). Loss masks come
from the generated ids: every token up to and including the first EOS (any EOS id), zero after; a
completion with no EOS within the budget is truncated. Pad ids are never consulted (pad is often EOS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor
from transformers import GenerationConfig, PreTrainedModel


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


class GroupSampler:
    """Samples ``group_size`` completions per prompt with HF ``generate`` (KV cache on).

    ``temperature`` also scales the logits of every later log-prob (ALGORITHMS.md §1). ``top_k = 0``
    and ``top_p = 1`` sample from the full tempered distribution, so the sampler and the loss see the
    same policy; narrowing either makes the rollout slightly off-policy.
    """

    def __init__(
        self,
        group_size: int = 8,
        max_new_tokens: int = 16,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
    ) -> None:
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 (a group of one has no relative advantage), got {group_size}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.group_size = group_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k

    def generation_config(self, eos_ids: list[int], pad_id: int, greedy: bool = False) -> GenerationConfig:
        return GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else self.temperature,
            top_p=None if greedy else self.top_p,
            top_k=None if greedy else self.top_k,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            use_cache=True,
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
        ids = prompt_ids.repeat_interleave(g, dim=0)  # [N, Tp]
        mask = prompt_mask.repeat_interleave(g, dim=0)  # [N, Tp]
        was_training = policy.training
        policy.eval()
        try:
            sequences = policy.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=self.generation_config(eos_ids, pad_id, greedy),
                synced_gpus=_is_sharded(policy),
            )  # [N, Tp + Tc]
        finally:
            policy.train(was_training)
        completion_mask, truncated = completion_mask_from_ids(sequences[:, prompt_ids.shape[1] :], eos_ids)
        return sequences, completion_mask, truncated


def _is_sharded(model: torch.nn.Module) -> bool:
    """True when parameters are DTensors (FSDP2): generation then needs every rank in each step."""
    return dist.is_available() and dist.is_initialized() and any(
        type(p).__name__ == "DTensor" for p in model.parameters()
    )
