"""Shared fixtures: a tiny Qwen3-config model and character tokenizer, saved and loaded like any checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_grpo.demo.tiny_model import save_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=64, num_layers=2, intermediate_size=128)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a long test (fault drills on real `lightning-grpo fit` subprocesses); deselect with -m 'not slow'"
    )
