"""The ``fast`` sampler backend draws from the same distribution as HF ``generate`` and keeps its masks.

Greedy decoding must give the same ids as ``generate`` (also when rows stop at different steps, which
the fast loop handles by dropping them from the batch); sampled tokens must follow softmax(logits / T)
after top-k / top-p; the two-level inverse-CDF draw must be exact.
"""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from lightning_grpo.demo.tiny_model import build_char_tokenizer, build_tiny_qwen3
from lightning_grpo.models import eos_token_ids, load_causal_lm, load_tokenizer
from lightning_grpo.sampling import (
    FastSampler,
    HFSampler,
    SamplingParams,
    completion_mask_from_ids,
    sampling_scores,
)
from tests.test_sampling_distribution import assert_fits

BACKENDS = {"hf": HFSampler, "fast": FastSampler}


def _draw(backend, model, batch, eos, pad, greedy=False, group_size=2, max_new_tokens=12, **options):
    """(sequences, completion mask, truncated) from the named sampler."""
    params = SamplingParams(num_samples=group_size, max_new_tokens=max_new_tokens, greedy=greedy, **options)
    out = BACKENDS[backend]().sample(model, batch["input_ids"], batch["attention_mask"], params, eos, pad)
    return out.sequences, out.completion_mask, out.truncated


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def chaotic_model_and_tokenizer():
    """Weights of std 0.3: greedy completions differ from prompt to prompt and from step to step."""
    tokenizer = build_char_tokenizer()
    model = build_tiny_qwen3(tokenizer, hidden_size=64, num_layers=2, intermediate_size=128, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.3, generator=generator)
    return model, tokenizer


def _prompts(tokenizer):
    # Different lengths: left padding, and per-row positions, must match generate's.
    return tokenizer(["1+1=", "12+34=", "7*8=", "100-1="], padding=True, return_tensors="pt", add_special_tokens=False)


def _both(model, tokenizer, eos, greedy, group_size=2, max_new_tokens=12, **kwargs):
    batch = _prompts(tokenizer)
    out = []
    for backend in ("hf", "fast"):
        torch.manual_seed(0)
        out.append(_draw(backend, model, batch, eos, tokenizer.pad_token_id, greedy, group_size, max_new_tokens, **kwargs))
    return batch, out


def test_fast_greedy_equals_hf_generate(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    model.train()
    batch, ((seq_hf, mask_hf, trunc_hf), (seq_fast, mask_fast, trunc_fast)) = _both(
        model, tokenizer, eos_token_ids(model, tokenizer), greedy=True
    )
    assert torch.equal(seq_fast, seq_hf)
    assert torch.equal(mask_fast, mask_hf) and torch.equal(trunc_fast, trunc_hf)
    assert model.training  # the training mode is restored


def test_fast_greedy_equals_hf_without_padding(chaotic_model_and_tokenizer) -> None:
    # Prompts of one length: no left padding, so the fast loop runs without an attention mask.
    model, tokenizer = chaotic_model_and_tokenizer
    batch = tokenizer(["12+34=", "56+78=", "90+12="], padding=True, return_tensors="pt", add_special_tokens=False)
    assert batch["attention_mask"].all()
    eos = eos_token_ids(model, tokenizer)
    out = []
    for backend in ("hf", "fast"):
        out.append(_draw(backend, model, batch, eos, tokenizer.pad_token_id, greedy=True))
    (seq_hf, mask_hf, trunc_hf), (seq_fast, mask_fast, trunc_fast) = out
    assert torch.equal(seq_fast, seq_hf)
    assert torch.equal(mask_fast, mask_hf) and torch.equal(trunc_fast, trunc_hf)
    assert model.training  # the training mode is restored


def test_fast_greedy_equals_hf_when_rows_stop_at_different_steps(chaotic_model_and_tokenizer) -> None:
    model, tokenizer = chaotic_model_and_tokenizer
    eos = eos_token_ids(model, tokenizer)
    _, ((seq, _, _), _) = _both(model, tokenizer, eos, greedy=True)
    tp = _prompts(tokenizer)["input_ids"].shape[1]
    # Declare as extra "EOS" a token that some rows emit early and others not at all: rows then
    # finish at different steps (the fast loop drops them from the batch; generate pads them).
    completions = seq[:, tp:]
    rows_with = {t: int((completions[:, 1:-2] == t).any(1).sum()) for t in completions[:, 1:-2].unique().tolist()}
    stop = min((n, t) for t, n in rows_with.items() if 0 < n < completions.shape[0])[1]
    eos = sorted(set(eos) | {stop})
    batch, ((seq_hf, mask_hf, trunc_hf), (seq_fast, mask_fast, trunc_fast)) = _both(model, tokenizer, eos, greedy=True)
    assert torch.equal(seq_fast, seq_hf)
    assert torch.equal(mask_fast, mask_hf) and torch.equal(trunc_fast, trunc_hf)
    assert trunc_hf.any() and not trunc_hf.all()  # some rows stopped early, some ran to the budget
    # Pad after the EOS, and the mask is the rule applied to the ids (first EOS inclusive).
    expected, _ = completion_mask_from_ids(seq_fast[:, tp:], eos)
    assert torch.equal(mask_fast, expected)
    assert (seq_fast[:, tp:][mask_fast == 0] == tokenizer.pad_token_id).all()


def test_fast_sampling_keeps_prompt_major_groups_and_masks(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    batch = _prompts(tokenizer)
    eos = eos_token_ids(model, tokenizer)
    torch.manual_seed(0)
    seq, mask, truncated = _draw("fast", model, batch, eos, tokenizer.pad_token_id, group_size=3, max_new_tokens=7)
    tp = batch["input_ids"].shape[1]
    assert seq.shape[0] == 12 and seq.shape[1] <= tp + 7 and mask.shape == (12, seq.shape[1] - tp)
    assert torch.equal(seq[:, :tp], batch["input_ids"].repeat_interleave(3, dim=0))
    expected, expected_truncated = completion_mask_from_ids(seq[:, tp:], eos)
    assert torch.equal(mask, expected) and torch.equal(truncated, expected_truncated)
    # The same seed gives the same completions; the samples of a group differ.
    torch.manual_seed(0)
    again, _, _ = _draw("fast", model, batch, eos, tokenizer.pad_token_id, group_size=3, max_new_tokens=7)
    assert torch.equal(seq, again)
    assert len({tuple(r) for r in seq[:3, tp:].tolist()}) > 1


@pytest.mark.parametrize("options", [{}, {"temperature": 0.7, "top_k": 5}, {"temperature": 1.3, "top_p": 0.6}])
def test_fast_first_token_follows_the_model_distribution(model_and_tokenizer, options) -> None:
    model, tokenizer = model_and_tokenizer
    prompt = tokenizer(["12+34="], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**prompt).logits[:, -1]  # [1, V]
    # The target: HF's warpers (temperature, then top-k, then top-p) on the same logits.
    scores = logits / options.get("temperature", 1.0)
    if options.get("top_k"):
        scores = TopKLogitsWarper(options["top_k"])(None, scores)
    if options.get("top_p"):
        scores = TopPLogitsWarper(options["top_p"])(None, scores)
    torch.testing.assert_close(sampling_scores(logits, SamplingParams(**options)), scores)
    probs = scores.softmax(-1)[0]  # [V]
    torch.manual_seed(0)
    seq, _, _ = _draw("fast", model, prompt, [10**6], tokenizer.pad_token_id, group_size=4000, max_new_tokens=1, **options)
    counts = torch.bincount(seq[:, -1], minlength=probs.numel()).double()
    assert counts[probs == 0].sum() == 0  # never a token outside top-k / top-p
    assert_fits(counts, probs)


def test_hf_backend_ignores_distribution_changing_checkpoint_defaults(model_and_tokenizer) -> None:
    # A checkpoint whose generation_config.json sets a repetition penalty (as many hub models do):
    # generate would merge it in, and the rollout would not follow softmax(logits / T).
    model, tokenizer = model_and_tokenizer
    model.generation_config.repetition_penalty = 3.0
    try:
        _, ((seq_hf, _, _), (seq_fast, _, _)) = _both(model, tokenizer, eos_token_ids(model, tokenizer), greedy=True)
        assert torch.equal(seq_hf, seq_fast)
    finally:
        model.generation_config.repetition_penalty = None


def test_the_default_sampler_is_the_fast_one_and_hf_is_chosen_by_class() -> None:
    from lightning_grpo.rewards.exact import ExactInteger
    from lightning_grpo.rollout_engine import RolloutEngine

    assert isinstance(RolloutEngine(rewards=[ExactInteger()]).sampler, FastSampler)  # the default
    assert isinstance(RolloutEngine(sampler=HFSampler(), rewards=[ExactInteger()]).sampler, HFSampler)


def test_fast_sampler_falls_back_to_hf_generate_and_says_why(model_and_tokenizer, monkeypatch, caplog) -> None:
    import lightning_grpo.sampling.fast as fast

    model, tokenizer = model_and_tokenizer
    batch = _prompts(tokenizer)
    eos = eos_token_ids(model, tokenizer)
    monkeypatch.setattr(fast, "is_sharded", lambda policy: True)  # as under FSDP2
    calls = []
    monkeypatch.setattr(HFSampler, "generate", lambda self, *args: calls.append(args) or torch.zeros(8, 3, dtype=torch.long))
    sampler = FastSampler()
    with caplog.at_level("INFO"):
        for _ in range(2):
            sampler.generate(model, batch["input_ids"], batch["attention_mask"], SamplingParams(2, 3), eos, 0)
    assert len(calls) == 2  # HF generate did the work
    said = [r.getMessage() for r in caplog.records if "HF generate" in r.getMessage()]
    assert len(said) == 1 and "sharded" in said[0]  # the reason, once


def test_fast_sampler_steps_through_the_hf_forward_where_the_lean_decoder_cannot(model_and_tokenizer, monkeypatch, caplog) -> None:
    from lightning_grpo.sampling.static_cache import StaticCacheDecoder

    model, tokenizer = model_and_tokenizer
    eos = eos_token_ids(model, tokenizer)
    _, ((seq_hf, _, _), (seq_lean, _, _)) = _both(model, tokenizer, eos, greedy=True)
    monkeypatch.setattr(StaticCacheDecoder, "unsupported_reason", staticmethod(lambda model: "a test's reason"))
    with caplog.at_level("INFO"):
        _, (_, (seq_forward, _, _)) = _both(model, tokenizer, eos, greedy=True)
    assert torch.equal(seq_forward, seq_hf) and torch.equal(seq_lean, seq_hf)
    assert any("a test's reason" in r.getMessage() for r in caplog.records)
