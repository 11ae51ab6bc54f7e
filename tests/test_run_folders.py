"""A run that fails before its first step removes what it wrote to its log folder, and nothing of another run's."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lightning_grpo.run_folders import RunFolders


def _trainer(log_dir: Path) -> SimpleNamespace:
    """What ``record_log_dir`` / ``remove_if_unused`` read of a Trainer that failed before training started."""
    return SimpleNamespace(loggers=[object()], log_dir=str(log_dir), is_global_zero=True, global_step=0)


def _write(path: Path, age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def _own_events(folder: Path) -> Path:
    return _write(folder / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.0")


def test_a_failed_run_removes_its_own_files_and_then_its_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "runs" / "demo" / "version_0"
    trainer = _trainer(folder)
    folders = RunFolders()
    folders.record_log_dir(trainer)
    assert folders.created_log_dir
    for name in ("config.yaml", "hparams.yaml", "metrics.csv", "completions.jsonl"):
        _write(folder / name)
    _own_events(folder)
    (folder / "checkpoints").mkdir()
    assert folders.remove_if_unused(trainer) is True
    assert not folder.exists() and (tmp_path / "runs" / "demo").is_dir()
    assert f"removed the run folder {folder}" in capsys.readouterr().err


def test_a_failed_run_keeps_another_runs_files_in_the_same_version_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two runs started together on one save_dir can get the same version_N: the one that fails must not
    # delete what the other wrote there (its notes, its event files, a config older than this run).
    folder = tmp_path / "runs" / "demo" / "version_0"
    trainer = _trainer(folder)
    folders = RunFolders()
    folders.record_log_dir(trainer)
    own = [_write(folder / "config.yaml"), _write(folder / "hparams.yaml"), _own_events(folder)]
    foreign = [
        _write(folder / "notes.txt"),
        _write(folder / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid() + 1}.0"),
        _write(folder / "metrics.csv", age_s=60),  # written before this run started
        _write(folder / "samples" / "eval.jsonl"),
    ]
    assert folders.remove_if_unused(trainer) is False
    assert [p for p in own if p.exists()] == []
    assert [p for p in foreign if not p.exists()] == []
    assert "kept the folder, which holds files of another run" in capsys.readouterr().err


def test_a_folder_with_a_checkpoint_or_a_run_that_stepped_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "version_0"
    trainer = _trainer(folder)
    folders = RunFolders()
    folders.record_log_dir(trainer)
    config = _write(folder / "config.yaml")
    _write(folder / "checkpoints" / "step=1.ckpt")
    assert folders.remove_if_unused(trainer) is False and config.exists()
    (folder / "checkpoints" / "step=1.ckpt").unlink()
    folders._start_step = 0
    trainer.global_step = 2
    assert folders.remove_if_unused(trainer) is False and config.exists()
