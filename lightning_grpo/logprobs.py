"""Per-token log-probs and entropy of completion tokens in one chunked pass.

The model is called once (through its root ``forward``, so FSDP2 hooks run) with
``logits_to_keep = Tc + 1``: logits exist only for completion positions, in the model's dtype. The
float32 work (temperature, log-sum-exp, gather, entropy) then runs over chunks of positions; the
log-prob of each chunk is recomputed in backward (activation checkpointing), so no float32
[B, T, V] tensor is ever held, neither in forward nor for autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)  # [B, T]


def _chunk_logprobs(logits: Tensor, targets: Tensor, temperature: float) -> Tensor:
    scaled = logits.float() / temperature  # [B, C, V]
    return scaled.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(scaled, dim=-1)  # [B, C]


@torch.no_grad()
def _chunk_entropy(logits: Tensor, temperature: float) -> Tensor:
    scaled = logits.float() / temperature  # [B, C, V]
    log_z = torch.logsumexp(scaled, dim=-1, keepdim=True)  # [B, C, 1]
    probs = torch.exp(scaled - log_z)  # [B, C, V]
    return log_z.squeeze(-1) - (probs * scaled).sum(dim=-1)  # [B, C]


def completion_logprobs(
    model: nn.Module,
    input_ids: Tensor,  # [B, Tp + Tc]
    attention_mask: Tensor,  # [B, Tp + Tc]
    prompt_length: int,
    temperature: float = 1.0,
    chunk_size: int = 64,
    with_entropy: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """log π(token) [B, Tc] (graph-connected when grad is on) and token entropy [B, Tc] (detached, nats)."""
    completion_len = input_ids.shape[1] - prompt_length
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        logits_to_keep=completion_len + 1,
    ).logits[:, :-1]  # [B, Tc, V] predicting each completion token
    targets = input_ids[:, prompt_length:]  # [B, Tc]
    logps, entropies = [], []
    for start in range(0, completion_len, chunk_size):
        chunk = logits[:, start : start + chunk_size]  # [B, C, V]
        chunk_targets = targets[:, start : start + chunk_size]  # [B, C]
        if torch.is_grad_enabled():
            logps.append(checkpoint(_chunk_logprobs, chunk, chunk_targets, temperature, use_reentrant=False))
        else:
            logps.append(_chunk_logprobs(chunk, chunk_targets, temperature))
        if with_entropy:
            entropies.append(_chunk_entropy(chunk, temperature))
    logp = torch.cat(logps, dim=1)  # [B, Tc]
    return logp, (torch.cat(entropies, dim=1) if with_entropy else None)
