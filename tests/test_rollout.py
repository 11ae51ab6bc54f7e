"""Completion masks come from generated ids: up to and including the first EOS, never from pad ids."""

import torch

from lightning_grpo.models import eos_token_ids, load_causal_lm, load_tokenizer
from lightning_grpo.sampling import HFSampler, SamplingParams, completion_mask_from_ids

EOS, EOT, PAD = 1, 7, 0


def test_mask_includes_first_eos_and_nothing_after() -> None:
    ids = torch.tensor([[5, 6, EOS, 9, 9], [5, EOS, EOS, EOS, EOS]])
    mask, truncated = completion_mask_from_ids(ids, [EOS])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert truncated.tolist() == [False, False]


def test_pad_equal_to_eos_is_not_mistaken_for_padding() -> None:
    # HF pads finished rows with pad_token_id; when pad == EOS the first EOS still ends the completion
    # and the real EOS token is a loss token.
    ids = torch.tensor([[EOS, EOS, EOS], [4, 4, EOS]])
    mask, truncated = completion_mask_from_ids(ids, [EOS])
    assert mask.tolist() == [[1, 0, 0], [1, 1, 1]]
    assert truncated.tolist() == [False, False]


def test_truncated_completion_keeps_every_token() -> None:
    ids = torch.tensor([[4, 5, 6, 7], [4, EOS, PAD, PAD]])
    mask, truncated = completion_mask_from_ids(ids, [EOS])
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert truncated.tolist() == [True, False]


def test_several_eos_ids_the_earliest_wins() -> None:
    ids = torch.tensor([[4, EOT, 5, EOS], [4, 5, EOS, EOT], [4, 5, 6, 8]])
    mask, truncated = completion_mask_from_ids(ids, [EOS, EOT])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    assert truncated.tolist() == [False, False, True]


def test_sampler_returns_groups_in_prompt_major_order(tiny_model_dir) -> None:
    model = load_causal_lm(str(tiny_model_dir))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    batch = tokenizer(["1+1=", "12+34="], padding=True, return_tensors="pt")
    torch.manual_seed(0)
    model.train()
    samples = HFSampler().sample(
        model, batch["input_ids"], batch["attention_mask"], SamplingParams(num_samples=3, max_new_tokens=5),
        eos_token_ids(model, tokenizer), tokenizer.pad_token_id,
    )
    sequences, mask, truncated = samples.sequences, samples.completion_mask, samples.truncated
    assert sequences.shape[0] == 6 and sequences.shape[1] <= batch["input_ids"].shape[1] + 5
    # Each completion row starts with its own prompt, three rows per prompt.
    assert torch.equal(sequences[:3, : batch["input_ids"].shape[1]], batch["input_ids"][0].expand(3, -1))
    assert torch.equal(sequences[3:, : batch["input_ids"].shape[1]], batch["input_ids"][1].expand(3, -1))
    assert mask.shape == (6, sequences.shape[1] - batch["input_ids"].shape[1]) and truncated.shape == (6,)
    assert model.training  # generation restores the training mode
    # The mask agrees with the rule applied to the returned ids.
    expected, _ = completion_mask_from_ids(sequences[:, batch["input_ids"].shape[1] :], [tokenizer.eos_token_id])
    assert torch.equal(mask, expected)
