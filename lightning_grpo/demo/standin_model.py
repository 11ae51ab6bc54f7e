"""Stand-ins for real checkpoints, built offline: a Qwen2 model with the real vocabulary but tiny width.

A real Qwen2.5 checkpoint has an embedding of 151,936 rows while its tokenizer has about 151,665
entries (the embedding is padded for fast matrix shapes), a byte-level BPE tokenizer, a chat template
with ``<|im_start|>``/``<|im_end|>`` turns that adds a default system turn, and a generation config
that stops at ``<|im_end|>`` or ``<|endoftext|>`` and asks for ``repetition_penalty`` 1.1, temperature
0.7, top-p 0.8 and top-k 20. :func:`save_qwen2_like` writes a checkpoint with all of that except the
width: a randomly initialised ``Qwen2ForCausalLM`` (hidden 64, 2 layers by default) with the real
vocabulary size, beside a byte-level tokenizer of only 259 entries (the 256 byte symbols and three
special tokens) built with the ``tokenizers`` library, so almost every id a random model samples is
one the tokenizer cannot decode, as the padding rows are in a real checkpoint. Both are saved with
``save_pretrained`` and load back through ``from_pretrained`` like any checkpoint.

``tools/make_standin_model.py`` is its command line (the recipes' offline trial); the tests use it where they
need the shapes of a real model (vocabulary-sized logits, a chat template)
without its weights: ``path = save_qwen2_like(tmp_path / "qwen")``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

QWEN2_VOCAB_SIZE = 151_936  # rows of Qwen2.5's embedding and output layer (0.5B to 72B, Math and Coder alike)
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Qwen2.5's chat template without tools: a default system turn when the messages have none.
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + QWEN_DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_qwen_like_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (no merges: one token per byte) with Qwen's special tokens and chat template.

    ``<|endoftext|>`` is the pad token and ``<|im_end|>`` the EOS token, as in Qwen2.5's instruct
    tokenizers; 259 entries in all.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={symbol: i for i, symbol in enumerate(alphabet)}, merges=[]))
    core.add_special_tokens([ENDOFTEXT, IM_START, IM_END])  # ids 256, 257, 258, in Qwen's order
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START],
        model_max_length=131_072,
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def build_qwen2_like(
    tokenizer: PreTrainedTokenizerFast,
    vocab_size: int = QWEN2_VOCAB_SIZE,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 32_768,
    seed: int = 0,
) -> Qwen2ForCausalLM:
    """A randomly initialised ``Qwen2ForCausalLM`` with ``vocab_size`` rows and a Qwen2.5-Instruct generation config."""
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the tokenizer's {len(tokenizer)} entries")
    endoftext = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        bos_token_id=endoftext,
        eos_token_id=im_end,
        pad_token_id=endoftext,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext,
        pad_token_id=endoftext,
        eos_token_id=[im_end, endoftext],
        do_sample=True,
        repetition_penalty=1.1,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
    )
    return model


def save_qwen2_like(path: str | Path, dtype: torch.dtype = torch.bfloat16, **sizes: int) -> Path:
    """Build the model and tokenizer and save both with ``save_pretrained`` under ``path`` (weights in ``dtype``,
    bf16 as Qwen publishes them)."""
    path = Path(path)
    tokenizer = build_qwen_like_tokenizer()
    model = build_qwen2_like(tokenizer, **sizes).to(dtype)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
