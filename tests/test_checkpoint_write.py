"""Writing a checkpoint file: missing folders are made, and the file gets the mode ``open()`` would give.

Found by the rule-based mutation check (``tools/mutation_check.py lightning_grpo/checkpoint_io.py``):
no test wrote into a folder two levels deep, and the umask fallback used where ``/proc`` is missing
(macOS) never ran on Linux.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lightning_grpo import checkpoint_io
from lightning_grpo.checkpoint_io import atomic_torch_save, default_file_mode


def test_save_makes_every_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "version_0" / "checkpoints" / "last.ckpt"
    atomic_torch_save({"step": torch.tensor(7)}, target)
    assert torch.load(target)["step"].item() == 7
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
@pytest.mark.parametrize("proc", [True, False], ids=["proc", "no-proc"])
def test_default_mode_is_what_open_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int, proc: bool) -> None:
    if not proc:  # as on a system without /proc: the umask is read by setting it
        def no_proc(self: Path, *args: object, **kwargs: object) -> str:
            raise OSError(f"no {self}")

        monkeypatch.setattr(checkpoint_io.Path, "read_text", no_proc)
    previous = os.umask(umask)
    try:
        plain = tmp_path / "plain"
        plain.write_bytes(b"")  # the mode open() gives a new file under this umask
        mode = default_file_mode()
        assert os.umask(umask) == umask  # the fallback put the umask back
    finally:
        os.umask(previous)
    assert mode == plain.stat().st_mode & 0o777
