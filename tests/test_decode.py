"""``StaticCacheDecoder`` computes the HF forward's next-token logits, step after step.

Against the HF forward with its ``DynamicCache`` on the same tokens: left-padded prompts (per-row
positions and masks), grouped-query attention, Qwen2's q/k/v biases, Llama without q/k norms, rows
dropped mid-way. Architectures it does not reproduce (or wrapped projections) are refused, and the
``fast`` sampler then still matches HF ``generate``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from lightning_grpo.sampling import FastSampler, HFSampler, SamplingParams
from lightning_grpo.sampling.static_cache import StaticCacheDecoder
from lightning_grpo.logprobs import position_ids_from_mask
from lightning_grpo.demo.tiny_model import build_char_tokenizer, build_tiny_qwen3

VOCAB = 100
SMALL = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)


def _perturbed(model: nn.Module) -> nn.Module:
    """Weights of std 0.2, biases and norm weights away from their init: every term of the layer counts."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.normal_(0, 0.2, generator=generator)
            else:
                param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval()


BUILDERS = {
    "qwen3": lambda: build_tiny_qwen3(build_char_tokenizer(), hidden_size=64, num_layers=2, intermediate_size=128),
    "qwen2 (qkv bias)": lambda: Qwen2ForCausalLM(Qwen2Config(**SMALL)),
    "llama (no q/k norm)": lambda: LlamaForCausalLM(LlamaConfig(**SMALL)),
}


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return _perturbed(BUILDERS[name]())


@pytest.mark.parametrize("name", list(BUILDERS))
def test_lean_steps_equal_the_hf_forward(name: str) -> None:
    model = _model(name)
    assert StaticCacheDecoder.supports(model)
    group, steps, tp = 3, 6, 7
    prompt_ids = torch.randint(3, VOCAB, (2, tp))  # [P, Tp]
    prompt_mask = torch.ones(2, tp, dtype=torch.long)
    prompt_mask[1, :3] = 0  # left padding: row 1 starts at position 0 three slots in
    positions = position_ids_from_mask(prompt_mask)  # [P, Tp]
    with torch.no_grad():
        hf_cache, lean_cache = DynamicCache(config=model.config), DynamicCache(config=model.config)
        for cache in (hf_cache, lean_cache):
            model(
                input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions, cache=cache,
                use_cache=True,
            )
        hf_cache.batch_repeat_interleave(group)
        lean = StaticCacheDecoder(model, lean_cache, group, tp + steps)
        n = 2 * group
        mask = torch.cat([prompt_mask.repeat_interleave(group, 0), torch.ones(n, steps, dtype=torch.long)], dim=1)
        position = positions[:, -1].repeat_interleave(group) + 1  # [n]
        tokens = torch.randint(3, VOCAB, (n, steps))  # [n, steps]: the fed tokens (any; both see the same)
        rows = torch.arange(n)
        for step in range(steps):
            if step == 3:  # drop rows 1 and 4 (one from each prompt), as when they emitted an EOS
                keep = torch.tensor([0, 2, 3, 5])
                hf_cache.batch_select_indices(keep)
                lean.select(keep)
                rows, mask, position = rows[keep], mask[keep], position[keep]
            token = tokens[rows, step]
            expected = model(
                input_ids=token[:, None], attention_mask=mask[:, : tp + step + 1], position_ids=position[:, None],
                cache=hf_cache, use_cache=True,
            ).logits[:, -1]  # [n, V]
            got = lean.step(token, position, tp + step, mask.bool())
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
            assert expected.std() > 0.5  # the logits are far from flat: a wrong term would show
            position = position + 1


def test_lean_step_without_padding_needs_no_mask() -> None:
    model = _model("qwen3")
    ids = torch.randint(3, VOCAB, (2, 5))
    with torch.no_grad():
        cache, full = DynamicCache(config=model.config), model(input_ids=ids).logits  # [2, 5, V]
        model(input_ids=ids[:, :4], cache=cache, use_cache=True)
        lean = StaticCacheDecoder(model, cache, 1, 5)
        got = lean.step(ids[:, 4], torch.tensor([4, 4]), 4, None)
    torch.testing.assert_close(got, full[:, 4], atol=2e-5, rtol=1e-4)


def test_unsupported_models_are_refused() -> None:
    qwen3 = _model("qwen3")
    sliding = Qwen2ForCausalLM(Qwen2Config(**SMALL, use_sliding_window=True, sliding_window=4, max_window_layers=0))
    assert not StaticCacheDecoder.supports(sliding)  # a sliding window changes the attention
    assert not StaticCacheDecoder.supports(nn.Linear(2, 2))
    wrapped = _model("qwen3")
    wrapped.model.layers[1].self_attn.q_proj = nn.Sequential(wrapped.model.layers[1].self_attn.q_proj)  # an adapter
    assert not StaticCacheDecoder.supports(wrapped)
    assert StaticCacheDecoder.supports(qwen3)


def test_fast_sampler_without_the_lean_decoder_still_equals_generate() -> None:
    """A refused model goes through the HF forward loop: greedy ids still equal ``generate``'s."""
    tokenizer = build_char_tokenizer()
    model = _model("qwen3")
    model.model.layers[0].mlp.up_proj = nn.Sequential(model.model.layers[0].mlp.up_proj)
    assert not StaticCacheDecoder.supports(model)
    batch = tokenizer(["1+1=", "12+34="], padding=True, return_tensors="pt", add_special_tokens=False)
    out = []
    params = SamplingParams(num_samples=2, max_new_tokens=8, greedy=True)
    for sampler in (HFSampler(), FastSampler()):
        out.append(sampler.sample(model, batch["input_ids"], batch["attention_mask"], params, [tokenizer.eos_token_id],
                                  tokenizer.pad_token_id).sequences)
    assert torch.equal(out[0], out[1])
