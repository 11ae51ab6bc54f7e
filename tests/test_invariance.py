"""Splitting a mini-batch into micro-batches must not change the update (ALGORITHMS.md §1)."""

import pytest
import torch

from lightning_grpo.models import enable_activation_checkpointing, eos_token_ids, load_causal_lm, load_tokenizer
from lightning_grpo.module import minibatch_backward
from lightning_grpo.objectives import GRPO, Normalizers
from lightning_grpo.rollout import Rollout
from lightning_grpo.sampling import HFSampler, SamplingParams


def _rollout(model, tokenizer) -> Rollout:
    prompts = ["3+4=", "10+25="]
    batch = tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(1)
    samples = HFSampler().sample(
        model, batch["input_ids"], batch["attention_mask"], SamplingParams(num_samples=4, max_new_tokens=6),
        eos_token_ids(model, tokenizer), tokenizer.pad_token_id,
    )
    seq, cmask, trunc = samples.sequences, samples.completion_mask, samples.truncated
    tp = batch["input_ids"].shape[1]
    n = seq.shape[0]
    return Rollout(
        input_ids=seq,
        attention_mask=torch.cat([batch["attention_mask"].repeat_interleave(4, 0), cmask], 1),
        completion_mask=cmask,
        truncated=trunc,
        rewards=torch.zeros(n),
        reward_components={},
        group_ids=torch.arange(n) // 4,
        group_size=4,
        prompt_length=tp,
        temperature=0.9,
        max_new_tokens=6,
    )


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean", "constant_norm"])
def test_micro_batch_split_does_not_change_gradient(tiny_model_dir, aggregation) -> None:
    model = load_causal_lm(str(tiny_model_dir))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rollout = _rollout(model, tokenizer)
    n = rollout.input_ids.shape[0]
    mask = rollout.completion_mask.float()
    # Lengths vary across rows, so a per-micro-batch normaliser would give a different gradient.
    assert len(set(mask.sum(1).tolist())) > 1
    advantages = torch.tensor([1.0, -0.5, 0.3, -0.8, 0.0, 1.2, -1.1, 0.4])
    generator = torch.Generator().manual_seed(0)
    # Off-policy old log-probs and a reference, so clipping and the KL term are both exercised.
    with torch.no_grad():
        from lightning_grpo.logprobs import completion_logprobs

        base, _ = completion_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.prompt_length, 0.9)
    old = base + 0.3 * torch.randn(base.shape, generator=generator)
    ref = base + 0.2 * torch.randn(base.shape, generator=generator)
    objective = GRPO(beta=0.1, aggregation=aggregation)
    norm = Normalizers(num_sequences=float((mask.sum(1) > 0).sum()), num_tokens=float(mask.sum()), max_length=6.0)

    def gradient(micro: int) -> tuple[torch.Tensor, float]:
        model.zero_grad(set_to_none=True)
        rows = torch.arange(n).split(micro)
        result = minibatch_backward(
            model, objective, rollout, list(rows), norm, mask, advantages, old, ref, None, backward=lambda l: l.backward()
        )
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), float(result.metrics["loss"])

    full, full_loss = gradient(8)
    assert full.abs().sum() > 0
    for micro in (4, 2, 1):
        split, split_loss = gradient(micro)
        torch.testing.assert_close(split, full, atol=1e-5, rtol=1e-4)
        assert split_loss == pytest.approx(full_loss, abs=1e-6)
    # Gradient checkpointing recomputes activations in backward: the same update, less memory.
    enable_activation_checkpointing(model)
    model.train()
    calls = []
    mlp_forward = model.model.layers[0].mlp.forward
    model.model.layers[0].mlp.forward = lambda *args, **kwargs: calls.append(1) or mlp_forward(*args, **kwargs)
    checkpointed, checkpointed_loss = gradient(4)
    assert len(calls) == 4  # 2 micro-batches, each layer run again in backward
    torch.testing.assert_close(checkpointed, full, atol=1e-5, rtol=1e-4)
    assert checkpointed_loss == pytest.approx(full_loss, abs=1e-6)
