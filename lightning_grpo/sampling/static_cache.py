"""A lean one-token decode step for Llama-style decoder stacks (Qwen3, Qwen2, Llama) over a static KV cache.

The ``fast`` sampler's decode loop spends most of each step on the overhead around the arithmetic
when it calls the HF ``forward``: a causal mask built per call, a cache that grows by concatenation
(every layer copies its keys and values once per token), rotary tables recomputed per call,
output objects. For a small model on CPU that is about half of a GRPO step. ``StaticCacheDecoder``
runs the same arithmetic with the model's own parameters and nothing else:

* keys and values live in buffers allocated once for the whole completion, [n, Hkv, Tp + Tc, d],
  filled from the HF prefill (which stays the reference path) and written one slot per step;
* rotary cos / sin come from the model's own ``rotary_emb`` once, for every position;
* q, k, v (and gate, up) are one matrix product each, from weights concatenated once per rollout;
* grouped-query attention without repeating keys: the Hq / Hkv query heads that share a key head
  are that head's queries (a single position each, so the same mask applies to all of them).

It computes what the HF forward computes, up to float rounding (tested against it with left
padding, GQA, biases, dropped rows). ``supports`` accepts only the architectures whose layer is
exactly this arithmetic and plain ``nn.Linear`` projections (an adapter such as LoRA wraps them and
is then not bypassed: the fast sampler then steps through the HF forward, and logs why).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import DynamicCache, PreTrainedModel

# Architectures whose decoder layer is: x + o(attn(rope(norm?(q)), rope(norm?(k)), v)), then x + mlp(norm(x)).
SUPPORTED_MODEL_TYPES = ("qwen3", "qwen2", "llama")
_STATIC_ROPE_TYPES = (None, "default", "linear", "llama3", "yarn")  # cos/sin depend on the position only


class StaticCacheDecoder:
    """Decode steps for ``n`` rows after an HF prefill; rows may be dropped between steps."""

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """True when ``model`` is a causal LM this decoder reproduces exactly (else use the HF forward)."""
        return StaticCacheDecoder.unsupported_reason(model) is None

    @staticmethod
    def unsupported_reason(model: nn.Module) -> str | None:
        """Why this decoder cannot reproduce ``model``'s decode step (None: it can)."""
        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            return f"model type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}"
        if getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None):
            return "sliding-window attention"
        if any(kind != "full_attention" for kind in (getattr(config, "layer_types", None) or [])):
            return "layers other than full attention"
        rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
        rope_type = rope.get("rope_type", rope.get("type"))
        if rope_type not in _STATIC_ROPE_TYPES:
            return f"rope type {rope_type!r}"
        if getattr(config, "pretraining_tp", 1) != 1:
            return "pretraining_tp != 1"
        backbone = getattr(model, "model", None)
        parts = ("embed_tokens", "layers", "norm", "rotary_emb")
        if backbone is None or not all(hasattr(backbone, name) for name in parts):
            return "not a plain decoder stack (an adapter wrapper such as peft's hides it)"
        for layer in backbone.layers:
            attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
            linears = [getattr(attention, name, None) for name in ("q_proj", "k_proj", "v_proj", "o_proj")]
            linears += [getattr(mlp, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
            if any(type(linear) is not nn.Linear for linear in linears):
                return "projections that are not plain nn.Linear (e.g. LoRA adapters)"
        if type(getattr(model, "lm_head", None)) is not nn.Linear:
            return "an output layer that is not a plain nn.Linear"
        return None

    def __init__(self, model: PreTrainedModel, prefill: DynamicCache, repeat: int, capacity: int) -> None:
        """Takes the prefill's keys and values ([P, Hkv, Tp, d] per layer), each row repeated ``repeat``
        times (the G samples of a prompt share its prefill), into buffers of ``capacity`` slots."""
        config = model.config
        self.model = model
        self.layers = list(model.model.layers)
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        attention = self.layers[0].self_attn
        self.head_dim = attention.head_dim
        self.scale = attention.scaling
        self.keys: list[Tensor] = []  # per layer [n, Hkv, capacity, d]
        self.values: list[Tensor] = []
        for keys, values in _cache_tensors(prefill):
            filled = keys.shape[2]
            buffer_k = keys.new_zeros(keys.shape[0] * repeat, self.num_kv_heads, capacity, self.head_dim)
            buffer_v = torch.zeros_like(buffer_k)
            buffer_k[:, :, :filled] = keys.repeat_interleave(repeat, dim=0)
            buffer_v[:, :, :filled] = values.repeat_interleave(repeat, dim=0)
            self.keys.append(buffer_k)
            self.values.append(buffer_v)
        # One matrix product for q, k, v and one for gate, up (weights change between rollouts: built per decoder).
        self.qkv = [_concat_linear(l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj) for l in self.layers]
        self.gate_up = [_concat_linear(l.mlp.gate_proj, l.mlp.up_proj) for l in self.layers]
        self.q_norms = [getattr(l.self_attn, "q_norm", None) for l in self.layers]
        self.k_norms = [getattr(l.self_attn, "k_norm", None) for l in self.layers]
        positions = torch.arange(capacity, device=self.keys[0].device).unsqueeze(0)  # [1, C]: positions < slots
        cos, sin = model.model.rotary_emb(self.keys[0], positions)  # [1, C, d] each
        self.cos, self.sin = cos[0], sin[0]  # [C, d]

    @torch.no_grad()
    def step(self, token: Tensor, position: Tensor, slot: int, attend: Tensor | None) -> Tensor:
        """Logits [n, V] of the next token after ``token`` [n] at ``position`` [n], written at ``slot``.

        ``attend`` [n, >= slot + 1] (bool) marks the cache slots each row may attend to (None: all).
        """
        n, d = token.shape[0], self.head_dim
        heads, kv_heads = self.num_heads, self.num_kv_heads
        cos = self.cos[position].unsqueeze(1)  # [n, 1, d]
        sin = self.sin[position].unsqueeze(1)
        mask = None if attend is None else attend[:, None, None, : slot + 1]  # [n, 1, 1, L]
        hidden = self.model.model.embed_tokens(token)  # [n, D]
        for i, layer in enumerate(self.layers):
            attention = layer.self_attn
            qkv = F.linear(_rms_norm(hidden, layer.input_layernorm), *self.qkv[i])  # [n, (Hq + 2 Hkv) d]
            qkv = qkv.view(n, heads + 2 * kv_heads, d)
            q, k, v = qkv[:, :heads], qkv[:, heads : heads + kv_heads], qkv[:, heads + kv_heads :]
            if self.q_norms[i] is not None:
                q, k = _rms_norm(q, self.q_norms[i]), _rms_norm(k, self.k_norms[i])
            qk = torch.cat([q, k], dim=1)  # [n, Hq + Hkv, d]
            qk = qk * cos + _rotate_half(qk) * sin
            self.keys[i][:, :, slot] = qk[:, heads:]
            self.values[i][:, :, slot] = v
            queries = qk[:, :heads].reshape(n, kv_heads, heads // kv_heads, d)  # query head h uses key head h // rep
            keys, values = self.keys[i][:, :, : slot + 1], self.values[i][:, :, : slot + 1]  # [n, Hkv, L, d]
            out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, scale=self.scale)
            # out: [n, Hkv, rep, d], i.e. query heads in order
            hidden = hidden + attention.o_proj(out.reshape(n, heads * d))
            gate, up = F.linear(_rms_norm(hidden, layer.post_attention_layernorm), *self.gate_up[i]).chunk(2, dim=-1)
            hidden = hidden + layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)
        return self.model.lm_head(_rms_norm(hidden, self.model.model.norm))  # [n, V]

    def select(self, keep: Tensor) -> None:
        """Keep only the rows ``keep`` [n'] (indices) in the cache."""
        self.keys = [k.index_select(0, keep) for k in self.keys]
        self.values = [v.index_select(0, keep) for v in self.values]


def _cache_tensors(cache: DynamicCache) -> list[tuple[Tensor, Tensor]]:
    """(keys, values) per layer of an HF ``DynamicCache`` (transformers 5 ``layers``, 4.x ``key_cache``)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def _concat_linear(*linears: nn.Linear) -> tuple[Tensor, Tensor | None]:
    """Weight [sum out, in] and bias (None when no projection has one) of the stacked projections."""
    weight = torch.cat([linear.weight for linear in linears])
    if all(linear.bias is None for linear in linears):
        return weight, None
    bias = torch.cat([
        linear.bias if linear.bias is not None else linear.weight.new_zeros(linear.out_features) for linear in linears
    ])
    return weight, bias


def _rms_norm(x: Tensor, norm: nn.Module) -> Tensor:
    """The HF RMSNorm: normalise in float32, cast back, then scale by the weight."""
    eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps")
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), norm.weight, eps)
    return norm.weight * F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)
