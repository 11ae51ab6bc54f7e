"""The ``Sampler`` interface: prompts in, ``Samples`` out, with the live policy.

A sampler turns P left-padded prompts into n completions each (group-major: row i belongs to prompt
i // n) with the policy as it is now: eval mode, no grad, KV cache. What to draw is a
:class:`SamplingParams` (the completion budget and the distribution: temperature, then top-k, then
top-p, as HF ``generate`` applies them); how to draw it is the sampler's business (HF ``generate``,
the project's fast decode loop, later an inference engine). The data module builds the params from
its configuration and never needs to know which sampler runs.

Loss masks come from the generated ids: every token up to and including the first EOS (any EOS id),
zero after; a completion with no EOS within the budget is truncated. Pad ids are never consulted
(pad is often EOS).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class SamplingParams:
    """What to draw: n completions per prompt of at most ``max_new_tokens`` from softmax(logits / T).

    ``temperature`` also scales the logits of every later log-prob (docs/algorithms.md §1). ``top_k = 0``
    and ``top_p = 1`` sample the full tempered distribution, so the sampler and the loss see the same
    policy; narrowing either makes the rollout slightly off-policy. ``greedy`` takes the argmax.
    """

    num_samples: int = 8
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: off), got {self.top_k}")


@dataclass(frozen=True)
class Sampling:
    """The configured sampling distribution and completion budget (``data.rollout.sampling``).

    How many completions and whether greedy are the caller's: :meth:`params` makes the sampler's
    :class:`SamplingParams` (G for training, k and greedy for validation).

    Args:
        max_new_tokens: the completion budget per model turn, in tokens; a completion without EOS
            within it is truncated.
        temperature: divides the logits before sampling (> 0; 1: the model's own distribution); the
            loss's log-probs use the same temperature, so the update sees the policy that sampled.
        top_p: nucleus sampling, keep the smallest set of tokens whose probability reaches ``top_p``
            (1: off); below 1 the rollout is slightly off-policy.
        top_k: keep the ``top_k`` most likely tokens (0: off); above 0 the rollout is slightly off-policy.
    """

    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        SamplingParams(1, self.max_new_tokens, self.temperature, self.top_p, self.top_k)  # validates

    def params(self, num_samples: int, greedy: bool = False) -> SamplingParams:
        return SamplingParams(num_samples, self.max_new_tokens, self.temperature, self.top_p, self.top_k, greedy)


@dataclass
class Samples:
    """n completions for each of P prompts; N = P·n rows in group-major order."""

    sequences: Tensor  # [N, Tp + Tc] the left-padded prompt followed by the completion (pad after its EOS)
    completion_mask: Tensor  # [N, Tc] 1 up to and including the first EOS
    truncated: Tensor  # [N] bool: no EOS within max_new_tokens
    prompt_mask: Tensor  # [N, Tp] the prompts' attention mask, repeated per sample
    num_samples: int  # n
    generation_s: float = 0.0  # wall time of the generation
    # Multi-turn episodes (lightning_grpo.episodes): the completion region holds model and environment
    # tokens; completion_mask is then the loss mask (model tokens) and context_mask the attention (all).
    context_mask: Tensor | None = None  # [N, Tc] None: the completion_mask
    env_rewards: Tensor | None = None  # [N] the environment's own rewards, None when it gave none
    final_turn_start: Tensor | None = None  # [N] where the last model turn starts in the completion region
    stats: dict[str, float] = field(default_factory=dict)  # episode counters, logged with the rollout

    @property
    def prompt_length(self) -> int:
        return self.prompt_mask.shape[1]  # Tp

    @property
    def completion_ids(self) -> Tensor:
        return self.sequences[:, self.prompt_length :]  # [N, Tc]


def completion_mask_from_ids(completion_ids: Tensor, eos_ids: list[int]) -> tuple[Tensor, Tensor]:
    """Loss mask [N, Tc] (1 up to and including the first EOS) and truncated flags [N]."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))  # [N, Tc]
    has_eos = is_eos.any(dim=1)  # [N]
    first_eos = torch.where(has_eos, is_eos.int().argmax(dim=1), completion_ids.shape[1])  # [N]
    positions = torch.arange(completion_ids.shape[1], device=completion_ids.device)  # [Tc]
    mask = (positions.unsqueeze(0) <= first_eos.unsqueeze(1)).long()  # [N, Tc]
    return mask, ~has_eos


class Sampler(ABC):
    """Base class: ``sample`` handles eval mode, no grad, timing and masks; subclasses ``generate``."""

    @torch.no_grad()
    def sample(
        self,
        policy: nn.Module,
        prompt_ids: Tensor,  # [P, Tp] left-padded
        prompt_mask: Tensor,  # [P, Tp]
        params: SamplingParams,
        eos_ids: list[int],
        pad_id: int,
    ) -> Samples:
        was_training = policy.training
        policy.eval()
        start = time.perf_counter()
        try:
            sequences = self.generate(policy, prompt_ids, prompt_mask, params, eos_ids, pad_id)  # [N, Tp + Tc]
        finally:
            policy.train(was_training)
        completion_mask, truncated = completion_mask_from_ids(sequences[:, prompt_ids.shape[1] :], eos_ids)
        return Samples(
            sequences=sequences,
            completion_mask=completion_mask,
            truncated=truncated,
            prompt_mask=prompt_mask.repeat_interleave(params.num_samples, dim=0),
            num_samples=params.num_samples,
            generation_s=time.perf_counter() - start,
        )

    @abstractmethod
    def generate(
        self,
        policy: nn.Module,
        prompt_ids: Tensor,  # [P, Tp] left-padded
        prompt_mask: Tensor,  # [P, Tp]
        params: SamplingParams,
        eos_ids: list[int],
        pad_id: int,
    ) -> Tensor:
        """Sequences [P·n, Tp + Tc]: each prompt repeated n times, then its completion (pad after EOS)."""
