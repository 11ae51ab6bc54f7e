"""The tiny offline models of the demo and the tests: a real Qwen3 config and a character tokenizer.

The model is a randomly initialised ``Qwen3ForCausalLM`` from a real ``Qwen3Config``; the tokenizer is
a character-level ``tokenizers`` model built without any download. Both are saved with
``save_pretrained`` and loaded back through the same ``from_pretrained`` path as any real checkpoint.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

PAD, EOS, BOS = "<|pad|>", "<|endoftext|>", "<|startoftext|>"


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over printable ASCII plus pad/EOS/BOS, built without any download."""
    specials = [PAD, EOS, BOS]
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=" "))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, bos_token=BOS, unk_token=" "
    )
    tokenizer.padding_side = "left"
    return tokenizer


@dataclass(frozen=True)
class TinyModelShape:
    """The Qwen3 config sizes of a tiny model (the demo's warm start: ``prepare.init_args.model``)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 256


def build_tiny_qwen3(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    max_position_embeddings: int = 256,
    seed: int = 0,
) -> Qwen3ForCausalLM:
    """A randomly initialised Qwen3-architecture model sized for CPU tests and the demo."""
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def save_tiny_model(path: str | Path, seed: int = 0, **sizes: int) -> Path:
    """Build the tiny model and tokenizer and save both with ``save_pretrained`` under ``path``."""
    path = Path(path)
    tokenizer = build_char_tokenizer()
    model = build_tiny_qwen3(tokenizer, seed=seed, **sizes)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
