"""Where a run's checkpoints are: the folders its checkpoint callbacks write, and the newest complete one there.

"Newest" is by write time (``st_mtime_ns``): ``last.ckpt``, ``step=K.ckpt`` and an interrupt checkpoint
compete alike. A temporary file of an unfinished atomic write (``.<name>.*.tmp``,
:mod:`lightning_grpo.checkpoint_io`) is never taken for a checkpoint. The interrupt callback, the run's
closing line, the module's "last good checkpoint" and ``--ckpt_path=last`` all ask here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning_grpo.checkpoint_io import TEMP_SUFFIX


def newest_checkpoint(directory: Path) -> Path | None:
    """The most recently written complete checkpoint (``*.ckpt``, file or folder) in ``directory``, or None."""
    if not directory.is_dir():
        return None
    found = [
        p for p in directory.iterdir()
        if not p.name.startswith(".") and not p.name.endswith(TEMP_SUFFIX) and p.suffix == ".ckpt"
    ]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)


def newest_checkpoint_in(directories: Iterable[Path]) -> Path | None:
    """The most recently written complete checkpoint among ``directories``, or None."""
    found = [p for p in map(newest_checkpoint, directories) if p is not None]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)


def checkpoint_dirs(trainer: Any) -> list[Path]:
    """The folders the trainer's checkpoint callbacks write to (set once ``fit`` has set them up)."""
    callbacks = getattr(trainer, "checkpoint_callbacks", None) or []
    return [Path(c.dirpath) for c in callbacks if getattr(c, "dirpath", None)]


def newest_run_checkpoint(trainer: Any) -> Path | None:
    """The most recently written complete checkpoint in the trainer's checkpoint folders, or None."""
    return newest_checkpoint_in(checkpoint_dirs(trainer))
