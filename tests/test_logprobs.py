"""The blocked log-prob/entropy pass: the numbers and gradients of a direct full softmax, in bounded memory.

Values and gradients are checked in float64 against autograd through the model's own full logits
(``log_softmax(logits / T)``), for every kind of output layer the pass handles itself (tied
embeddings, a separate head with a bias, Gemma's soft-capping, a model that ignores
``logits_to_keep``) and for one it hands back to the model (an unknown architecture). Memory: with
the real Qwen2.5 vocabulary, no operation of the forward or backward may create a tensor anywhere near
the size of the [B, Tc, V] logits.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    PhiConfig,
    PhiForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

import lightning_grpo.logprobs as logprobs_module
from lightning_grpo.logprobs import chunked_head, completion_logprobs
from lightning_grpo.demo.tiny_model import build_char_tokenizer, build_tiny_qwen3
from lightning_grpo.models import load_causal_lm, load_tokenizer

REAL_VOCAB = 151_936  # Qwen2.5's embedding rows


def _batch(tokenizer, prompts, completions):
    prompt = tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    comp = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in completions]
    width = max(len(c) for c in comp)
    comp_ids = torch.tensor([c + [tokenizer.eos_token_id] * (width - len(c)) for c in comp])
    comp_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in comp])
    ids = torch.cat([prompt["input_ids"], comp_ids], dim=1)
    mask = torch.cat([prompt["attention_mask"], comp_mask], dim=1)
    return ids, mask, prompt["input_ids"].shape[1], comp_mask


def test_left_padded_batch_matches_each_sequence_alone(tiny_model_dir) -> None:
    model = load_causal_lm(str(tiny_model_dir))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    prompts, completions = ["7+8=", "123+456=", "1="], ["15", "579", "1"]
    ids, mask, tp, comp_mask = _batch(tokenizer, prompts, completions)
    with torch.no_grad():
        logp, entropy = completion_logprobs(model, ids, mask, tp, temperature=0.7, chunk_size=2)
        for i in range(len(prompts)):
            one_ids, one_mask, one_tp, _ = _batch(tokenizer, [prompts[i]], [completions[i]])
            alone, alone_entropy = completion_logprobs(model, one_ids, one_mask, one_tp, temperature=0.7)
            n = len(completions[i])
            torch.testing.assert_close(logp[i, :n], alone[0, :n], atol=1e-5, rtol=0)
            torch.testing.assert_close(entropy[i, :n], alone_entropy[0, :n], atol=1e-5, rtol=0)


# ---- exactness against full logits, float64 ---------------------------------------------------------------
VOCAB = 300
SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)


class IgnoresLogitsToKeep(Qwen2ForCausalLM):
    """A model whose forward accepts ``logits_to_keep`` but computes every position's logits."""

    def forward(self, *args, logits_to_keep=0, **kwargs):  # type: ignore[no-untyped-def]
        return super().forward(*args, logits_to_keep=0, **kwargs)


class UnknownArchitecture(Qwen2ForCausalLM):
    """The same network under a model type the blocked path does not know: it must use the model's logits."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__(config)
        self.config.model_type = "somebody_elses_lm"


BUILDERS = {
    "qwen3 (tied embeddings)": lambda: build_tiny_qwen3(build_char_tokenizer(), hidden_size=32, num_layers=2,
                                                        intermediate_size=64),
    "qwen2 (separate head)": lambda: Qwen2ForCausalLM(Qwen2Config(**SMALL, tie_word_embeddings=False)),
    "phi (head with bias)": lambda: PhiForCausalLM(PhiConfig(**{**SMALL, "num_key_value_heads": 4})),
    "gemma2 (soft-capping)": lambda: Gemma2ForCausalLM(
        Gemma2Config(**SMALL, head_dim=8, final_logit_softcapping=3.0, attn_implementation="eager")
    ),
    "ignores logits_to_keep": lambda: IgnoresLogitsToKeep(Qwen2Config(**SMALL)),
    "unknown architecture (fallback)": lambda: UnknownArchitecture(Qwen2Config(**SMALL)),
}


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = BUILDERS[name]()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # larger weights than the init: peaked and flat distributions, softcap active
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * (0.3 if param.dim() > 1 else 0.1))
        if hasattr(model, "lm_head") and model.lm_head.bias is not None:
            model.lm_head.bias.normal_(0, 1.0, generator=generator)
    return model.double().train()


def _inputs(vocab: int, left_padding: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(3, vocab, (3, 11), generator=generator)
    mask = torch.ones_like(ids)
    if left_padding:
        mask[1, :2] = 0
    mask[2, 9:] = 0  # a completion that ended early
    return ids, mask, 5


def _reference(model, ids, mask, tp, temperature):
    """Full logits, full log-softmax at the temperature (the model's own forward, all positions)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, tp - 1 : -1]
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    logp = log_probs.gather(-1, ids[:, tp:].unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logp, entropy


@pytest.mark.parametrize("entropy_grad", [False, True], ids=["detached entropy", "entropy gradient"])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_values_and_gradients_equal_autograd_through_full_logits(name: str, entropy_grad: bool) -> None:
    model = _model(name)
    # Gemma 2's eager attention gives NaN at left-padded positions in float64 (its own forward too)
    ids, mask, tp = _inputs(model.config.vocab_size, left_padding=not name.startswith("gemma2"))
    temperature = 0.7
    expect_fallback = name.startswith("unknown")
    assert (chunked_head(model)[0] is None) == expect_fallback
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logprobs_module._warned.clear()
        # chunk_size=1: one completion position of all rows per block, so several blocks
        logp, entropy = completion_logprobs(model, ids, mask, tp, temperature=temperature, chunk_size=1,
                                            entropy_grad=entropy_grad)
    assert any("somebody_elses_lm" in str(w.message) for w in caught) == expect_fallback
    want_logp, want_entropy = _reference(model, ids, mask, tp, temperature)
    # In a float64 model the pass computes in float64, so it must agree to float64 rounding.
    torch.testing.assert_close(logp, want_logp, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(entropy, want_entropy, atol=1e-12, rtol=1e-10)
    assert entropy.requires_grad == entropy_grad
    generator = torch.Generator().manual_seed(3)
    weights = torch.randn(logp.shape, generator=generator, dtype=torch.float64)  # an arbitrary upstream gradient
    entropy_weights = torch.randn(logp.shape, generator=generator, dtype=torch.float64)

    def objective(lp, h):  # type: ignore[no-untyped-def]
        value = (lp * weights).sum()
        return value + (h * entropy_weights).sum() if entropy_grad else value

    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(objective(logp, entropy), params, allow_unused=True)
    want = torch.autograd.grad(objective(want_logp, want_entropy), params, allow_unused=True)
    for (pname, _), got_g, want_g in zip(model.named_parameters(), grads, want):
        if want_g is None:
            continue
        torch.testing.assert_close(got_g, want_g, atol=1e-11, rtol=1e-9, msg=lambda m: f"{pname}: {m}")
    head_grad = dict(zip([n for n, _ in model.named_parameters()], grads))
    assert any(n.startswith("lm_head") or "embed_tokens" in n for n, g in head_grad.items() if g is not None)


def test_entropy_without_entropy_grad_is_a_value() -> None:
    model = _model("qwen2 (separate head)")
    ids, mask, tp = _inputs(VOCAB)
    logp, entropy = completion_logprobs(model, ids, mask, tp)
    assert logp.requires_grad and not entropy.requires_grad
    with pytest.raises(ValueError, match="entropy_grad"):
        completion_logprobs(model, ids, mask, tp, with_entropy=False, entropy_grad=True)


def test_frozen_output_layer_gets_no_gradient_but_the_hidden_states_do() -> None:
    """An adapter run: the head does not train; the blocked backward still returns d/d hidden."""
    model = _model("qwen2 (separate head)")
    model.lm_head.weight.requires_grad_(False)
    ids, mask, tp = _inputs(VOCAB)
    logp, _ = completion_logprobs(model, ids, mask, tp)
    logp.sum().backward()
    assert model.lm_head.weight.grad is None
    assert model.model.layers[-1].mlp.down_proj.weight.grad.abs().sum() > 0


# ---- memory at the real vocabulary size ----------------------------------------------------------------------
class LargestTensor(TorchDispatchMode):
    """Records the largest tensor (bytes) any operation returns while active (forward and CPU backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                size = t.untyped_storage().nbytes()
                if size > self.largest:
                    self.largest, self.op = size, str(func)
        return out


@pytest.fixture(scope="module")
def real_vocab_qwen2() -> nn.Module:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=REAL_VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         tie_word_embeddings=True)
    return Qwen2ForCausalLM(config).train()


def test_no_tensor_near_the_size_of_the_logits_at_the_real_vocabulary(real_vocab_qwen2) -> None:
    """8 completions of 64 tokens: float32 logits [8, 64, V] would be 311 MB. The blocked pass may create
    blocks of at most 64 MiB and the weight's gradient (V × 16 floats = 9.7 MB), nothing bigger."""
    model = real_vocab_qwen2
    batch, tp, tc = 8, 4, 64
    ids = torch.randint(3, REAL_VOCAB, (batch, tp + tc))
    mask = torch.ones_like(ids)
    logits_bytes = batch * tc * REAL_VOCAB * 4
    with LargestTensor() as watch:
        logp, entropy = completion_logprobs(model, ids, mask, tp, temperature=0.9)
        (logp.sum() + 0.0 * entropy.sum()).backward()
    assert model.model.embed_tokens.weight.grad is not None
    assert watch.largest <= logprobs_module._BLOCK_BYTES_CPU, (watch.largest, watch.op)
    assert watch.largest < logits_bytes / 4
    # The same measurement sees the full logits when the model computes them (the mutation it guards).
    with LargestTensor() as watch_full, torch.no_grad():
        model(input_ids=ids, attention_mask=mask, logits_to_keep=tc)
    assert watch_full.largest >= logits_bytes


def test_sampled_ids_beyond_the_tokenizer_are_scored(real_vocab_qwen2) -> None:
    """Real checkpoints have more embedding rows than tokenizer entries; the model can sample the extra
    ids and their log-probs must be finite and equal to the full softmax's."""
    model = real_vocab_qwen2
    ids = torch.tensor([[5, 6, 7, REAL_VOCAB - 1, REAL_VOCAB - 2, 9]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logp, entropy = completion_logprobs(model, ids, mask, 3)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, 2:-1]
    want = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 3:].unsqueeze(-1)).squeeze(-1)
    assert torch.isfinite(logp).all() and torch.isfinite(entropy).all()
    torch.testing.assert_close(logp, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padded", [False, True])
def test_shared_prompt_pass_equals_the_full_forward_with_gradients(padded: bool) -> None:
    """Groups of G rows with one prompt each: the prompt runs once, values and gradients are unchanged."""
    tokenizer = build_char_tokenizer()
    model = build_tiny_qwen3(tokenizer, hidden_size=64, num_layers=2, intermediate_size=128, seed=3).double()
    prompts = ["7+8=", "123+456=", "1="] if padded else ["7+8=", "5+6=", "9+9="]
    completions = ["15", "1", "1x", "579", "57", "5", "1", "2", "33"]  # 3 groups of G = 3, ragged
    ids, mask, tp, comp_mask = _batch(tokenizer, [p for p in prompts for _ in range(3)], completions)
    results = []
    for group_size in (None, 3):
        model.zero_grad()
        logp, entropy = completion_logprobs(model, ids, mask, tp, temperature=0.7, group_size=group_size)
        weights = torch.linspace(0.5, 2.0, logp.numel(), dtype=logp.dtype).view_as(logp)
        (logp * comp_mask * weights).sum().backward()
        results.append((logp.detach(), entropy, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (logp_full, ent_full, grad_full), (logp_shared, ent_shared, grad_shared) = results
    real = comp_mask.bool()
    torch.testing.assert_close(logp_shared[real], logp_full[real], atol=1e-10, rtol=0)
    torch.testing.assert_close(ent_shared[real], ent_full[real], atol=1e-10, rtol=0)
    for name, grad in grad_full.items():
        # the model's RMSNorm computes in float32 even in a float64 model, so gradients agree to ~1e-7
        torch.testing.assert_close(grad_shared[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_prompts_are_shared_only_for_whole_groups_of_one_prompt(monkeypatch) -> None:
    from lightning_grpo.logprobs import shares_prompts

    ids = torch.tensor([[5, 6, 1, 2], [5, 6, 3, 4], [7, 8, 1, 1], [7, 8, 2, 2]])
    mask = torch.ones_like(ids)
    assert shares_prompts(ids, mask, 2, 2)
    assert not shares_prompts(ids, mask, 2, None) and not shares_prompts(ids, mask, 2, 4)  # 4 rows, 2 prompts
    assert not shares_prompts(ids[:3], mask[:3], 2, 2)  # not whole groups
    padded = mask.clone()
    padded[1, 0] = 0
    assert not shares_prompts(ids, padded, 2, 2)  # same ids, different masks
    # A micro-batch that is not whole groups takes the plain forward: one model call, not two.
    tokenizer = build_char_tokenizer()
    model = build_tiny_qwen3(tokenizer, hidden_size=32, num_layers=1, intermediate_size=64)
    calls = []
    model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape), with_kwargs=True)
    with torch.no_grad():
        completion_logprobs(model, ids[:3] + 3, mask[:3], 2, group_size=2)
        assert len(calls) == 1
        completion_logprobs(model, ids + 3, mask, 2, group_size=2)
    assert calls[1:] == [torch.Size([2, 2]), torch.Size([4, 1])]  # prompts once, then completions minus the last token
