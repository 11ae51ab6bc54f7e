"""Where a run's logs, checkpoints and exports go: said at the start and at the end, and no empty run folder.

:class:`RunFolders` (``lightning-grpo`` adds it to every ``fit``) prints one line when training starts::

    run folders: logs runs/demo/version_3, checkpoints runs/demo/version_3/checkpoints, exports runs/demo/hf

and one when ``fit`` ends, with what was written (the newest checkpoint, the last export). A run that
fails before its first optimizer step would leave a ``version_N`` folder holding only its config and an
empty event file, the next run then being ``version_N+1``: :meth:`RunFolders.remove_if_unused`, called
by the CLI after a failed ``fit``, removes the log folder when this run created it, took no optimizer
step and wrote no checkpoint into it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_grpo.callbacks import newest_checkpoint
from lightning_grpo.export import ExportHuggingFace


def _say(message: str) -> None:
    if getattr(rank_zero_only, "rank", 0) == 0:
        print(message, file=sys.stderr, flush=True)


def checkpoint_dirs(trainer: Trainer) -> list[Path]:
    """The folders the run's checkpoint callbacks write to (resolved once ``fit`` has set them up)."""
    return [Path(c.dirpath) for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]


def export_callbacks(trainer: Trainer) -> list[ExportHuggingFace]:
    return [c for c in trainer.callbacks if isinstance(c, ExportHuggingFace)]


class RunFolders(Callback):
    """Says where the run's logs, checkpoints and exports go, and what was written there; see the module."""

    def __init__(self) -> None:
        self.log_dir: Path | None = None
        self.created_log_dir = False  # set by :meth:`record_log_dir` before anything is written
        self._start_step: int | None = None

    def record_log_dir(self, trainer: Trainer) -> None:
        """Note the log folder and whether it exists yet; call right after building the Trainer."""
        self.log_dir = Path(trainer.log_dir) if trainer.loggers and trainer.log_dir else None
        self.created_log_dir = self.log_dir is not None and not self.log_dir.exists()

    def describe(self, trainer: Trainer) -> str:
        parts = [f"logs {self.log_dir or (Path(trainer.log_dir) if trainer.log_dir else None) or 'none (logger off)'}"]
        folders = checkpoint_dirs(trainer)
        parts.append(f"checkpoints {', '.join(map(str, folders))}" if folders else "checkpoints none (checkpointing off)")
        exports = export_callbacks(trainer)
        if exports:
            parts.append(f"exports {', '.join(str(c.dirpath) for c in exports)}")
        return ", ".join(parts)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_step = trainer.global_step
        _say(f"run folders: {self.describe(trainer)}")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        written = [p for p in (newest_checkpoint(d) for d in checkpoint_dirs(trainer)) if p is not None]
        newest = max(written, key=lambda p: p.stat().st_mtime_ns, default=None)
        exported = [c.exported[-1] for c in export_callbacks(trainer) if c.exported]
        line = f"run done at step {trainer.global_step}: logs {self.log_dir or 'none'}"
        line += f", last checkpoint {newest}" if newest is not None else ", no checkpoint written"
        if exported:
            line += f", exported {', '.join(map(str, exported))}"
        _say(line)

    def steps_done(self, trainer: Trainer) -> int:
        """Optimizer steps this run took (0 when it failed before training started)."""
        return 0 if self._start_step is None else trainer.global_step - self._start_step

    def remove_if_unused(self, trainer: Trainer) -> bool:
        """After a failed ``fit``: remove the log folder this run created if it took no step and holds no checkpoint."""
        folder = self.log_dir
        if folder is None or not self.created_log_dir or not trainer.is_global_zero or not folder.is_dir():
            return False
        if self.steps_done(trainer) > 0 or any(p.suffix == ".ckpt" for p in folder.rglob("*")):
            return False
        shutil.rmtree(folder, ignore_errors=True)
        _say(f"removed the run folder {folder}: the run stopped before its first optimizer step")
        return True
