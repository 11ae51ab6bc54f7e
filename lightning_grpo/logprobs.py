"""Per-token log-probs and entropy of completion tokens in one chunked pass.

The model is called once (through its root ``forward``, so FSDP2 hooks run) with ``logits_to_keep``
set to the Tc positions that predict completion tokens: logits exist only there, in the model's
dtype. The float32 work (temperature, log-sum-exp, gather, entropy) then runs in one autograd function
over blocks of at most ``chunk_size`` positions (and at most ~8 MB of float32 per block), which saves
only the model-dtype logits and the log-normaliser [B, Tc] for backward; backward recomputes each
block's softmax from them straight into the gradient buffer. So no float32 [B, T, V] tensor is kept,
neither in forward nor for autograd, every vocabulary-wide temporary is one block (small enough to be
reused by the allocator instead of being page-faulted in afresh), and the log-normaliser serves both
the log-prob and the entropy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Float32 elements of one block of vocabulary-wide temporaries (8 MiB): big ones cost page faults on CPU.
_BLOCK_ELEMENTS = 1 << 21


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)  # [B, T]


def _scaled(logits: Tensor, temperature: float) -> Tensor:
    """float32 logits / temperature; the input itself when it already is float32 and T = 1 (never modify it)."""
    scaled = logits.float()
    return scaled if temperature == 1.0 else scaled / temperature


def _blocks(rows: int, vocab: int, chunk_rows: int) -> list[slice]:
    size = max(1, min(chunk_rows, _BLOCK_ELEMENTS // max(vocab, 1)))
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


class _CompletionLogProbs(torch.autograd.Function):
    """log softmax(logits / T)[target] [R] of flat logits [R, V], and the entropy [R] if asked.

    The entropy is value-only unless ``entropy_grad``: then backward adds its gradient,
    dH/dx_v = −p_v (log p_v + H) for x = logits / T (an entropy bonus needs it).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, temperature: float, chunk_rows: int, with_entropy: bool, entropy_grad: bool = False):  # type: ignore[override]
        rows, vocab = logits.shape
        log_z = torch.empty(rows, dtype=torch.float32, device=logits.device)  # [R]
        logp = torch.empty(rows, dtype=torch.float32, device=logits.device)  # [R]
        entropy = torch.empty(rows if with_entropy else 0, dtype=torch.float32, device=logits.device)  # [R]
        for block in _blocks(rows, vocab, chunk_rows):
            x = _scaled(logits[block], temperature)  # [b, V] float32
            z = torch.logsumexp(x, dim=-1, keepdim=True)  # [b, 1]
            log_z[block] = z.squeeze(-1)
            logp[block] = x.gather(-1, targets[block].unsqueeze(-1)).squeeze(-1) - z.squeeze(-1)
            if with_entropy:
                probs = torch.sub(x, z).exp_()  # [b, V]
                entropy[block] = z.squeeze(-1) - probs.mul_(x).sum(dim=-1)  # H = log Z − Σ p · x
        entropy_grad = entropy_grad and with_entropy
        ctx.save_for_backward(logits, targets, log_z, entropy if entropy_grad else entropy[:0])
        ctx.temperature, ctx.chunk_rows, ctx.entropy_grad = temperature, chunk_rows, entropy_grad
        ctx.set_materialize_grads(False)
        if not entropy_grad:
            ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp: Tensor | None, grad_entropy: Tensor | None):  # type: ignore[override]
        logits, targets, log_z, entropy = ctx.saved_tensors
        temperature = ctx.temperature
        rows, vocab = logits.shape
        if not ctx.entropy_grad:
            grad_entropy = None
        if grad_logp is None and grad_entropy is None:
            return None, None, None, None, None, None
        # d logp / d x = onehot(target) − p;  d H / d x = −p (log p + H);  x = logits / T.
        grad = torch.empty(rows, vocab, dtype=torch.float32, device=logits.device)  # [R, V]
        upstream = grad_logp.float().unsqueeze(-1) if grad_logp is not None else None  # [R, 1]
        upstream_h = grad_entropy.float().unsqueeze(-1) if grad_entropy is not None else None  # [R, 1]
        for block in _blocks(rows, vocab, ctx.chunk_rows):
            out = grad[block]  # [b, V]
            torch.sub(_scaled(logits[block], temperature), log_z[block].unsqueeze(-1), out=out)  # log p
            if upstream_h is not None:
                # weight = −g_H (log p + H) − g_logp, then out = p · weight
                weight = (out + entropy[block].unsqueeze(-1)).mul_(-upstream_h[block])  # [b, V]
                if upstream is not None:
                    weight.sub_(upstream[block])
                out.exp_().mul_(weight)
            else:
                out.exp_().mul_(-upstream[block])
            if upstream is not None:
                out.scatter_add_(-1, targets[block].unsqueeze(-1), upstream[block])
        if temperature != 1.0:
            grad.div_(temperature)
        return grad.to(logits.dtype), None, None, None, None, None


def completion_logprobs(
    model: nn.Module,
    input_ids: Tensor,  # [B, Tp + Tc]
    attention_mask: Tensor,  # [B, Tp + Tc]
    prompt_length: int,
    temperature: float = 1.0,
    chunk_size: int = 64,
    with_entropy: bool = True,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """log π(token) [B, Tc] (graph-connected when grad is on) and token entropy [B, Tc] (nats).

    The entropy is detached unless ``entropy_grad`` (then graph-connected, for an entropy bonus).
    ``chunk_size`` bounds the completion positions (of all B rows) per block of float32 work.
    """
    batch, completion_len = input_ids.shape[0], input_ids.shape[1] - prompt_length
    # Exactly the Tc positions that predict a completion token (the last position predicts nothing).
    keep = torch.arange(prompt_length - 1, input_ids.shape[1] - 1, device=input_ids.device)  # [Tc]
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        logits_to_keep=keep,
    ).logits  # [B, Tc, V]
    if logits.shape[1] != completion_len:  # a model that ignores a tensor logits_to_keep
        logits = logits[:, prompt_length - 1 : -1]
    targets = input_ids[:, prompt_length:]  # [B, Tc]
    logp, entropy = _CompletionLogProbs.apply(
        logits.reshape(batch * completion_len, logits.shape[-1]),  # a view when contiguous
        targets.reshape(-1),
        temperature,
        max(1, chunk_size) * batch,
        with_entropy,
        entropy_grad,
    )
    logp = logp.view(batch, completion_len)  # [B, Tc]
    return logp, (entropy.view(batch, completion_len) if with_entropy else None)
