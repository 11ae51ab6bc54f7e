"""A model path that is neither a local checkpoint nor reachable on the hub gets the project's own error.

For the model and for the tokenizer (which the data module loads first, so its error is the first a
user sees): a hub-style id that the hub cannot provide (the hub is switched to offline mode here, so
nothing waits on the network), a local-style path that does not exist (transformers would say "Repo
id must be in the form ..."), and a local directory that holds no checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from tests.builders import make_data
from lightning_grpo.models import ModelLoadError, load_causal_lm, load_tokenizer

HUB_ID = "lightning-grpo-tests/no-such-model"


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("load", [load_causal_lm, load_tokenizer], ids=["model", "tokenizer"])
def test_unreachable_hub_id_is_named(load, offline_hub) -> None:  # type: ignore[no-untyped-def]
    what = "model" if load is load_causal_lm else "tokenizer"
    with pytest.raises(ModelLoadError, match=rf"cannot load the {what} '{HUB_ID}': no such local path, and the Hugging "
                                             r"Face hub did not provide it") as caught:
        load(HUB_ID)
    assert caught.value.__cause__ is not None  # transformers' own error, kept as the cause


@pytest.mark.parametrize("load", [load_causal_lm, load_tokenizer], ids=["model", "tokenizer"])
def test_missing_local_path_is_named(load, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "runs" / "demo" / "missing")
    with pytest.raises(FileNotFoundError, match=rf"path '{path}' does not exist"):
        load(path)


@pytest.mark.parametrize("load", [load_causal_lm, load_tokenizer], ids=["model", "tokenizer"])
def test_a_mistyped_path_under_a_local_folder_does_not_ask_the_hub(load, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``runs/typo`` has the shape of a hub id, but ``runs`` is a folder here: a missing local path, at
    once (the hub would retry for most of a minute without a network)."""
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"path 'runs/typo' does not exist \(a local path, not a hub id: 'runs' is"):
        load("runs/typo")


def test_the_hub_error_says_how_to_skip_the_retries(offline_hub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1"):
        load_tokenizer(HUB_ID)


@pytest.mark.parametrize("load", [load_causal_lm, load_tokenizer], ids=["model", "tokenizer"])
def test_local_directory_without_a_checkpoint_is_named(load, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match=rf"from the local path '{tmp_path}'"):
        load(str(tmp_path))


def test_the_data_module_reports_the_tokenizer_path_first(offline_hub) -> None:  # type: ignore[no-untyped-def]
    data = make_data(tokenizer=HUB_ID)
    with pytest.raises(ModelLoadError, match=rf"tokenizer: cannot load the tokenizer '{HUB_ID}'"):
        data.setup("fit")


def test_a_local_checkpoint_still_loads(tiny_model_dir: Path) -> None:
    assert load_tokenizer(str(tiny_model_dir)).padding_side == "left"
    assert load_causal_lm(str(tiny_model_dir)).config.model_type == "qwen3"
