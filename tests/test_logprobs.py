"""The chunked log-prob/entropy pass: padding, chunking and temperature must not change the numbers."""

import torch

from lightning_grpo.logprobs import completion_logprobs
from lightning_grpo.models import load_causal_lm, load_tokenizer


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


def test_chunked_values_equal_a_direct_full_softmax(tiny_model_dir) -> None:
    model = load_causal_lm(str(tiny_model_dir))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    ids, mask, tp, _ = _batch(tokenizer, ["2+2=", "40+2="], ["4", "42"])
    temperature = 0.5
    logp, entropy = completion_logprobs(model, ids, mask, tp, temperature=temperature, chunk_size=1)
    # Direct computation: full logits, full log-softmax at the temperature.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, tp - 1 : -1] / temperature
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    expected = log_probs.gather(-1, ids[:, tp:].unsqueeze(-1)).squeeze(-1)
    expected_entropy = -(log_probs.exp() * log_probs).sum(-1)
    torch.testing.assert_close(logp, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy, expected_entropy, atol=1e-5, rtol=1e-5)
    # Gradients through the checkpointed chunks equal those of the direct form.
    grad = torch.autograd.grad(logp.sum(), model.model.embed_tokens.weight)[0]
    expected_grad = torch.autograd.grad(expected.sum(), model.model.embed_tokens.weight)[0]
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-4)
