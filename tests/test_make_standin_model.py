"""tools/make_standin_model.py: an offline stand-in for a recipe's Qwen2.5 model that loads like any checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer

from lightning_grpo.demo.standin_model import QWEN2_VOCAB_SIZE
from tools import make_standin_model


def test_the_stand_in_has_the_real_vocabulary_context_and_chat_template(tmp_path: Path) -> None:
    path = tmp_path / "qwen"
    assert make_standin_model.main([str(path), "--context", "4096", "--hidden-size", "32", "--layers", "1"]) == 0
    config = AutoConfig.from_pretrained(path)
    assert (config.model_type, config.vocab_size, config.max_position_embeddings) == ("qwen2", QWEN2_VOCAB_SIZE, 4096)
    assert (config.hidden_size, config.num_hidden_layers) == (32, 1)
    tokenizer = AutoTokenizer.from_pretrained(path)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "1+1?"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"


def test_a_folder_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kept.txt").write_text("mine")
    assert make_standin_model.main([str(tmp_path)]) == 1
    assert f"{tmp_path} exists and is not empty" in capsys.readouterr().err
    assert make_standin_model.main([str(tmp_path / "x"), "--hidden-size", "30"]) == 1
