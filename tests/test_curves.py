"""tools/curves.py: one run, a folder of runs (one table each), and a folder with no run (an error naming it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from tools import curves


def _run(folder: Path, accuracies: list[float]) -> Path:
    writer = SummaryWriter(str(folder))
    for step, value in enumerate(accuracies):
        writer.add_scalar("train/accuracy", value, step)
    writer.close()
    return folder


def test_a_folder_of_runs_gives_one_table_per_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path / "demo" / "version_0", [0.0] * 5 + [1.0] * 5)
    _run(tmp_path / "demo" / "version_1", [0.5] * 10)
    assert curves.main([str(tmp_path / "demo")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "version_0:" and "first20%=0.0000 last20%=1.0000" in lines[1]
    assert lines[2] == "version_1:" and "change=+0.0000" in lines[3]
    assert curves.main([str(tmp_path / "demo" / "version_0")]) == 0  # one run: its table, no header
    assert capsys.readouterr().out.startswith("train/accuracy")


def test_a_folder_without_event_files_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty" / "version_0").mkdir(parents=True)
    assert curves.main([str(tmp_path / "empty")]) == 1
    assert f"no TensorBoard event files (events.out.tfevents.*) in {tmp_path / 'empty'} or below" in capsys.readouterr().err
    assert curves.main([str(tmp_path / "missing")]) == 1
    assert f"{tmp_path / 'missing'} is not a folder" in capsys.readouterr().err


def test_a_run_without_the_key_curves_says_what_it_has(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    writer = SummaryWriter(str(tmp_path / "warm"))
    writer.add_scalar("warm_start/loss", 1.0, 0)
    writer.close()
    assert curves.main([str(tmp_path / "warm")]) == 0
    assert "its scalars: warm_start/loss" in capsys.readouterr().out
