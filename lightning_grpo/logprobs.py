"""Per-token log-probs and entropy of completion tokens, in bounded memory at any vocabulary size.

A full-vocabulary logit tensor for a batch of completions is huge at real vocabulary sizes: with the
Qwen2.5 vocabulary (V = 151,936), 32 completions of 256 tokens give [32, 256, V] = 5 GB of float32,
and autograd keeps more of the same size for backward. So :func:`completion_logprobs` never builds it:

1. The model runs once, through its root ``forward`` (so FSDP2's and DDP's hooks run as for any
   forward), with ``logits_to_keep`` set to the Tc positions that predict completion tokens. A hook
   on the output layer takes its input, the final hidden states [B, Tc, D], and hands the layer an
   empty slice instead: the model returns empty logits, and the output layer never runs on the batch.
2. :class:`_ChunkedTokenLogProbs` applies the output layer to blocks of positions: per block it
   computes the logits [b, V] (in the model's dtype, as the model would; then float32), the final
   soft-capping where the model has one (Gemma 2/3), the temperature, log-sum-exp, the target's
   log-prob and the entropy, and keeps only [b]-sized results. Backward recomputes each block's logits
   from the saved hidden states and returns the gradients for the hidden states, the output weight
   (and bias): d logp / d logits = (onehot(target) − p) / T, and, when asked (``entropy_grad``, an
   entropy bonus), d H / d logits = −p · (log p + H) / T.

So the vocabulary-wide tensors alive at any time are a few [b, V] blocks (at most ``_block_bytes``
of float32 each: 64 MiB on CPU, 1 GiB on an accelerator), plus, for a weight that trains, its
gradient [V, D] (float32 while it accumulates over blocks when the weight is lower precision).

Models whose output layer is not a plain ``nn.Linear`` applied to the last hidden state (followed by
nothing, or by Gemma's soft-capping) take the old path, with a warning that names the reason: the
model's own logits [B, Tc, V] in its dtype are fed to the same blocked function (an identity
"output layer"), so the float32 work is still blocked, but the model-dtype logits exist whole. That
covers unknown architectures and an output layer wrapped by an adapter (LoRA on ``lm_head``).
"""

from __future__ import annotations

import inspect
import warnings
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from transformers import DynamicCache

# Architectures whose causal-LM forward is ``logits = lm_head(hidden[:, logits_to_keep])`` and nothing
# else (read in transformers' modeling files); those followed by ``cap · tanh(logits / cap)`` with
# ``config.final_logit_softcapping``.
PLAIN_HEAD_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi", "phi3", "gemma",
     "olmo2", "smollm3", "deepseek_v3"}
)
SOFTCAP_HEAD_MODEL_TYPES = frozenset({"gemma2", "gemma3_text"})

_BLOCK_BYTES_CPU = 64 << 20  # float32 bytes of one [b, V] block on CPU (bigger blocks only cost page faults)
_BLOCK_BYTES_ACCELERATOR = 1 << 30  # on a GPU: big enough for efficient [b, D] x [D, V] products
_warned: set[tuple[str, str]] = set()


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)  # [B, T]


def _block_bytes(device: torch.device) -> int:
    return _BLOCK_BYTES_CPU if device.type == "cpu" else _BLOCK_BYTES_ACCELERATOR


def _blocks(rows: int, vocab: int, chunk_rows: int, device: torch.device) -> list[slice]:
    size = max(1, min(chunk_rows, _block_bytes(device) // (4 * max(vocab, 1))))
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


def chunked_head(model: nn.Module) -> tuple[nn.Linear | None, float | None, str]:
    """The output layer the blocked path applies itself, the model's final soft-cap, and why not if not.

    Returns ``(lm_head, softcap, "")`` when the model's logits are exactly ``lm_head(hidden)``
    (then ``softcap · tanh(· / softcap)`` when ``softcap`` is not None), else ``(None, None, reason)``.
    Works through wrappers that forward ``config`` and ``get_output_embeddings`` (peft's ``PeftModel``).
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    softcap = getattr(config, "final_logit_softcapping", None)
    if model_type not in PLAIN_HEAD_MODEL_TYPES | SOFTCAP_HEAD_MODEL_TYPES:
        return None, None, (
            f"model type {model_type!r} is not one whose logits are known to be lm_head(hidden states) "
            f"(known: {sorted(PLAIN_HEAD_MODEL_TYPES | SOFTCAP_HEAD_MODEL_TYPES)})"
        )
    if type(head) is not nn.Linear:
        return None, None, f"its output layer is a {type(head).__name__}, not a plain torch.nn.Linear (an adapter on lm_head?)"
    if model_type in PLAIN_HEAD_MODEL_TYPES and softcap is not None:
        return None, None, f"model type {model_type!r} with final_logit_softcapping={softcap} is unexpected"
    return head, (float(softcap) if softcap is not None else None), ""


def _warn_once(model: nn.Module, reason: str) -> None:
    key = (type(model).__name__, reason)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"completion log-probs of {type(model).__name__}: {reason}; using the model's own logits, "
            "which hold [batch, completion length, vocabulary] values in the model's dtype",
            stacklevel=3,
        )


@contextmanager
def _capture_head_input(head: nn.Module, captured: list[tuple[Tensor, Tensor, Tensor | None]]) -> Iterator[None]:
    """While active, ``head`` records (its input, weight, bias) in ``captured`` and runs on an empty slice.

    The weight is taken during the forward: under FSDP2 that is the gathered (unsharded) tensor.
    """

    def take_input(module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]  # [B, T', D]
        captured.append((hidden, module.weight, module.bias))
        return (hidden[..., :0, :],) + tuple(args[1:])  # [B, 0, D]: the layer computes nothing

    handle = head.register_forward_pre_hook(take_input)
    try:
        yield
    finally:
        handle.remove()


def _logits_block(
    hidden: Tensor, weight: Tensor | None, bias: Tensor | None, softcap: float | None, temperature: float, out: Tensor
) -> Tensor:
    """``x = softcap(hidden @ weight.T + bias) / T`` of one block in ``out``'s dtype (float32), in ``out`` [b, V].

    The product runs in the model's dtype (the logits the model itself computes), then becomes
    float32; with ``weight`` None the block already is the logits.
    """
    if weight is None:
        out.copy_(hidden)
    elif hidden.dtype == out.dtype and bias is None:
        torch.matmul(hidden, weight.t(), out=out)
    else:
        out.copy_(nn.functional.linear(hidden, weight, bias))
    if softcap is not None:
        out.div_(softcap).tanh_().mul_(softcap)
    if temperature != 1.0:
        out.div_(temperature)
    return out


class _ChunkedTokenLogProbs(torch.autograd.Function):
    """log softmax(x)[target] [R] and entropy of softmax(x) [R], x = softcap(hidden @ W.T + b) / T, by blocks.

    ``weight`` None: ``hidden`` [R, V] already holds the logits. Entropy is a differentiable output
    only when ``entropy_grad``; otherwise it is a value (or empty when ``with_entropy`` is False).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        hidden: Tensor,  # [R, D] (or [R, V] logits when weight is None)
        weight: Tensor | None,  # [V, D]
        bias: Tensor | None,  # [V]
        targets: Tensor,  # [R]
        temperature: float,
        softcap: float | None,
        chunk_rows: int,
        with_entropy: bool,
        entropy_grad: bool,
    ) -> tuple[Tensor, Tensor]:
        rows = hidden.shape[0]
        vocab = weight.shape[0] if weight is not None else hidden.shape[1]
        device, dtype = hidden.device, _compute_dtype(hidden)
        log_z = torch.empty(rows, dtype=dtype, device=device)  # [R]
        logp = torch.empty(rows, dtype=dtype, device=device)  # [R]
        entropy = torch.empty(rows if with_entropy else 0, dtype=dtype, device=device)  # [R]
        blocks = _blocks(rows, vocab, chunk_rows, device)
        width = blocks[0].stop - blocks[0].start if blocks else 0
        x_buffer = torch.empty(width, vocab, dtype=dtype, device=device)  # reused by every block
        p_buffer = torch.empty(width, vocab, dtype=dtype, device=device)
        for block in blocks:
            b = block.stop - block.start
            x = _logits_block(hidden[block], weight, bias, softcap, temperature, x_buffer[:b])  # [b, V]
            # One exp pass serves log Z and the entropy: e = exp(x − max), log Z = max + log Σ e.
            top = x.amax(dim=-1, keepdim=True)  # [b, 1]
            x.sub_(top)  # x − max from here on
            e = torch.exp(x, out=p_buffer[:b])  # [b, V]
            total = e.sum(dim=-1)  # [b]
            shifted_z = total.log()  # [b]: log Z − max
            log_z[block] = shifted_z + top.squeeze(-1)
            logp[block] = x.gather(-1, targets[block].unsqueeze(-1)).squeeze(-1) - shifted_z
            if with_entropy:  # H = log Z − Σ p · x (shift-invariant), p = e / Σ e
                entropy[block] = shifted_z - e.mul_(x).sum(dim=-1) / total
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, entropy if entropy_grad else None)
        ctx.temperature, ctx.softcap, ctx.chunk_rows = temperature, softcap, chunk_rows
        ctx.entropy_grad = entropy_grad
        if not entropy_grad:
            ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp: Tensor, grad_entropy: Tensor | None):  # type: ignore[override]
        hidden, weight, bias, targets, log_z, entropy = ctx.saved_tensors
        temperature, softcap = ctx.temperature, ctx.softcap
        rows = hidden.shape[0]
        vocab = weight.shape[0] if weight is not None else hidden.shape[1]
        device, dtype = hidden.device, _compute_dtype(hidden)
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        with_entropy_grad = ctx.entropy_grad and grad_entropy is not None
        grad_hidden = torch.empty_like(hidden) if need_hidden else None  # [R, D]
        accumulate_dtype = torch.float32 if weight is not None and weight.dtype in (torch.bfloat16, torch.float16) else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=accumulate_dtype or weight.dtype, device=device) if need_weight else None
        )  # [V, D]
        grad_bias = torch.zeros(vocab, dtype=dtype, device=device) if need_bias else None  # [V]
        # d/d logits = (1 / T) · d/dx: the 1 / T is folded into the upstream gradients.
        g = grad_logp.to(dtype).unsqueeze(-1) / temperature  # [R, 1]
        g_entropy = grad_entropy.to(dtype).unsqueeze(-1) / temperature if with_entropy_grad else None  # [R, 1]
        blocks = _blocks(rows, vocab, ctx.chunk_rows, device)
        width = blocks[0].stop - blocks[0].start if blocks else 0
        x_buffer = torch.empty(width, vocab, dtype=dtype, device=device)
        p_buffer = torch.empty(width, vocab, dtype=dtype, device=device)
        for block in blocks:
            b = block.stop - block.start
            h = hidden[block]
            x = _logits_block(h, weight, bias, softcap, temperature, x_buffer[:b])  # [b, V] scaled logits
            z = log_z[block].unsqueeze(-1)  # [b, 1]
            p = torch.sub(x, z, out=p_buffer[:b]).exp_()  # [b, V] softmax(x)
            cap_factor = None
            if softcap is not None:  # d softcap(u)/du = 1 − tanh²(u / cap), and tanh(u / cap) = x · T / cap
                cap_factor = (x * (temperature / softcap)).square_().neg_().add_(1.0)  # [b, V]
            if g_entropy is not None:
                # d H / d x = −p (log p + H), log p = x − log Z
                dx = x.sub_(z).add_(entropy[block].unsqueeze(-1)).mul_(p).mul_(-g_entropy[block])
                dx.addcmul_(p, g[block], value=-1.0)
            else:
                dx = p.mul_(-g[block])
            dx.scatter_add_(-1, targets[block].unsqueeze(-1), g[block])  # d logp / d x = onehot − p
            if cap_factor is not None:
                dx.mul_(cap_factor)
            # dx is now d loss / d logits of the block, float32 [b, V]
            if weight is None:
                if need_hidden:
                    grad_hidden[block] = dx
                continue
            d_logits = dx.to(weight.dtype)  # as autograd would hand it to the model's output layer
            if need_hidden:
                torch.matmul(d_logits, weight, out=grad_hidden[block])  # [b, D]
            if need_weight:
                if accumulate_dtype is None:
                    grad_weight.addmm_(d_logits.t(), h)  # [V, D]
                else:
                    grad_weight.add_(d_logits.t() @ h)
            if need_bias:
                grad_bias.add_(dx.sum(dim=0))
        if grad_weight is not None and accumulate_dtype is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None, None


def completion_logprobs(
    model: nn.Module,
    input_ids: Tensor,  # [B, Tp + Tc]
    attention_mask: Tensor,  # [B, Tp + Tc]
    prompt_length: int,
    temperature: float = 1.0,
    chunk_size: int = 64,
    with_entropy: bool = True,
    entropy_grad: bool = False,
    group_size: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """log π(token) [B, Tc] (graph-connected when grad is on) and token entropy [B, Tc] (nats).

    ``group_size`` G: when the rows are whole groups of G completions of one prompt each (the
    rollout's layout), the prompt runs once per group and its keys and values serve the G
    completions (:func:`shares_prompts`); the result is the same as one forward over every row.

    The entropy is detached unless ``entropy_grad`` (then it is differentiable, for an entropy term
    in the loss). ``chunk_size`` bounds the completion positions (of all B rows) per block of
    float32 work, which is also bounded to ``_block_bytes`` of float32 per [b, V] block.
    """
    if entropy_grad and not with_entropy:
        raise ValueError("entropy_grad=True needs with_entropy=True")
    batch, completion_len = input_ids.shape[0], input_ids.shape[1] - prompt_length
    targets = input_ids[:, prompt_length:]  # [B, Tc]
    # Exactly the Tc positions that predict a completion token (the last position predicts nothing).
    keep = torch.arange(prompt_length - 1, input_ids.shape[1] - 1, device=input_ids.device)  # [Tc]
    head, softcap, reason = chunked_head(model)
    if reason:
        _warn_once(model, reason)
    captured: list[tuple[Tensor, Tensor, Tensor | None]] = []
    shared = shares_prompts(input_ids, attention_mask, prompt_length, group_size) and prompt_sharing_supported(model)
    with _capture_head_input(head, captured) if head is not None else _nothing():
        if shared:
            outputs = _forward_shared_prompts(model, input_ids, attention_mask, prompt_length, group_size)  # type: ignore[arg-type]
        else:
            outputs = [
                model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids_from_mask(attention_mask),
                    use_cache=False,
                    logits_to_keep=keep,
                )
            ]
    logits_parts = [output.logits if hasattr(output, "logits") else output[0] for output in outputs]
    if head is not None:
        if len(captured) != len(outputs):
            raise RuntimeError(
                f"the output layer of {type(model).__name__} ran {len(captured)} times in {len(outputs)} forwards"
            )
        weight, bias = captured[0][1], captured[0][2]
        features = _join_shared(captured, group_size) if shared else captured[0][0]
        # [B, Tc, D] final hidden states ([B, T, D] if logits_to_keep was ignored)
        if torch.is_grad_enabled() and any(part.requires_grad for part in logits_parts):
            # The model's (empty) outputs stay part of the graph, so hooks that wrappers (FSDP2) put on
            # the forward's outputs run in backward as they do for any forward. Adds an exact 0.
            features = features + sum(part.sum() for part in logits_parts).to(features.dtype)
        if _is_sharded_tensor(weight) or weight.untyped_storage().size() == 0:
            raise RuntimeError(
                f"{type(model).__name__}: the output layer's weight was resharded right after the forward; "
                "shard the output layer with the root module and reshard_after_forward=False "
                "(lightning_grpo.sharding.fully_shard_causal_lm does)"
            )
    else:
        features, weight, bias = logits_parts[0], None, None  # [B, Tc, V] model-dtype logits (never shared)
    if features.shape[1] != completion_len:  # a model that ignores a tensor logits_to_keep
        features = features[:, prompt_length - 1 : -1]
    logp, entropy = _ChunkedTokenLogProbs.apply(
        features.reshape(batch * completion_len, features.shape[-1]),  # a view when contiguous
        weight,
        bias,
        targets.reshape(-1),
        temperature,
        softcap,
        max(1, chunk_size) * batch,
        with_entropy,
        entropy_grad,
    )
    logp = logp.view(batch, completion_len)  # [B, Tc]
    return logp, (entropy.view(batch, completion_len) if with_entropy else None)


def _compute_dtype(hidden: Tensor) -> torch.dtype:
    """float32, or the model's dtype when it is wider (float64 in exactness tests)."""
    return torch.promote_types(hidden.dtype, torch.float32)


def _is_sharded_tensor(tensor: Tensor) -> bool:
    return type(tensor).__name__ == "DTensor"


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# ---- shared prompts -------------------------------------------------------------------------------------
def shares_prompts(input_ids: Tensor, attention_mask: Tensor, prompt_length: int, group_size: int | None) -> bool:
    """True when the B rows are B / G groups of G rows with the same prompt (ids and mask) each."""
    batch = input_ids.shape[0]
    if group_size is None or group_size < 2 or batch % group_size or prompt_length < 1:
        return False
    ids = input_ids[:, :prompt_length].reshape(-1, group_size, prompt_length)  # [P, G, Tp]
    mask = attention_mask[:, :prompt_length].reshape(-1, group_size, prompt_length)
    return bool((ids == ids[:, :1]).all() and (mask == mask[:, :1]).all())


def prompt_sharing_supported(model: nn.Module) -> bool:
    """Models whose forward over a prompt's KV cache equals the forward over prompt + completion.

    Plain decoder stacks of full attention (the known-head families above, no sliding window), not
    recomputing activations (gradient checkpointing turns the cache off in training).
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_MODEL_TYPES:
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    if any(kind != "full_attention" for kind in (getattr(config, "layer_types", None) or [])):
        return False
    for flag in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # transformers 5, 4.x
        if hasattr(type(model), flag) or hasattr(model, flag):
            return not getattr(model, flag)
    return True


def cache_keyword(model: nn.Module) -> str:
    """The forward's name for the KV cache: ``cache`` (transformers 5) or ``past_key_values``."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model  # peft
    try:
        return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    except (TypeError, ValueError):
        return "past_key_values"


def _forward_shared_prompts(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, prompt_length: int, group_size: int
) -> list:
    """Two forwards: the P prompts with a KV cache (the last position's output predicts the first
    completion token), then the completions over the cache repeated G times (each position's output
    predicts the next token; the last completion token predicts nothing and is not run)."""
    tp, total = prompt_length, input_ids.shape[1]
    positions = position_ids_from_mask(attention_mask)  # [B, T]
    cache = DynamicCache(config=model.config)
    keyword = cache_keyword(model)
    outputs = [
        model(
            input_ids=input_ids[::group_size, :tp],  # [P, Tp]
            attention_mask=attention_mask[::group_size, :tp],
            position_ids=positions[::group_size, :tp],
            use_cache=True,
            logits_to_keep=1,
            **{keyword: cache},
        )
    ]
    if total - tp > 1:
        cache.batch_repeat_interleave(group_size)  # differentiable: the G rows' gradients meet in the prompt
        outputs.append(
            model(
                input_ids=input_ids[:, tp : total - 1],  # [B, Tc - 1]
                attention_mask=attention_mask[:, : total - 1],
                position_ids=positions[:, tp : total - 1],
                use_cache=True,
                logits_to_keep=0,  # every position
                **{keyword: cache},
            )
        )
    return outputs


def _join_shared(parts: list[tuple[Tensor, Tensor, Tensor | None]], group_size: int) -> Tensor:
    """[B, Tc, D]: each prompt's last-position output repeated G times, then the completions' outputs."""
    first = parts[0][0].repeat_interleave(group_size, dim=0)  # [B, 1, D]
    return first if len(parts) == 1 else torch.cat([first, parts[1][0]], dim=1)
