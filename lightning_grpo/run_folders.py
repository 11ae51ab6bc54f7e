"""Where a run's logs, checkpoints and exports go: said at the start and at the end, and no empty run folder.

:class:`RunFolders` (``lightning-grpo`` adds it to every ``fit``) prints one line when training starts::

    run folders: logs runs/demo/version_3, checkpoints runs/demo/version_3/checkpoints, exports runs/demo/hf

and one when ``fit`` ends, with what was written (the newest checkpoint, the last export). A run that
fails before its first optimizer step would leave a ``version_N`` folder holding only its config and an
empty event file, the next run then being ``version_N+1``: :meth:`RunFolders.remove_if_unused`, called
by the CLI after a failed ``fit``, cleans up the log folder when this run created it, took no optimizer
step and no checkpoint is there. It deletes only what this run wrote (:data:`RUN_FILES` written since
the run noted its folder, and its own TensorBoard event files: this host, this process), then removes
the folders left empty: another run that got the same ``version_N`` (two runs started together on one
``save_dir``) keeps its files. The CLI notes the folder (:meth:`RunFolders.record_log_dir`) right
before ``fit``, after the run's ``prepare``, which is also when the logger picks its version.
"""

from __future__ import annotations

import fnmatch
import os
import socket
import sys
import time
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_grpo.checkpoint_paths import checkpoint_dirs, newest_run_checkpoint
from lightning_grpo.export import ExportHuggingFace

# What a run writes into its log folder before its first step (the config, the loggers' files).
RUN_FILES = ("config.yaml", "config_resumed*.yaml", "hparams.yaml", "metrics.csv", "completions.jsonl")
CLOCK_SLACK_S = 1.0  # a file's mtime may lag the clock the run read its start from (coarse or remote clocks)


def _say(message: str) -> None:
    if getattr(rank_zero_only, "rank", 0) == 0:
        print(message, file=sys.stderr, flush=True)


def export_callbacks(trainer: Trainer) -> list[ExportHuggingFace]:
    return [c for c in trainer.callbacks if isinstance(c, ExportHuggingFace)]


class RunFolders(Callback):
    """Says where the run's logs, checkpoints and exports go, and what was written there; see the module."""

    def __init__(self) -> None:
        self.log_dir: Path | None = None
        self.created_log_dir = False  # set by :meth:`record_log_dir` before anything is written
        self.started_at = 0.0  # time.time() when the folder was noted: what this run writes is newer
        self._start_step: int | None = None

    def record_log_dir(self, trainer: Trainer) -> None:
        """Note the log folder, whether it exists yet, and the time; call right before ``trainer.fit``."""
        self.started_at = time.time()
        self.log_dir = Path(trainer.log_dir) if trainer.loggers and trainer.log_dir else None
        self.created_log_dir = self.log_dir is not None and not self.log_dir.exists()

    def wrote(self, path: Path) -> bool:
        """Whether this run wrote the file ``path`` of its log folder (by its name and its write time)."""
        if path.name.startswith("events.out.tfevents."):
            own = f".{socket.gethostname()}.{os.getpid()}." in path.name
        else:
            own = any(fnmatch.fnmatch(path.name, pattern) for pattern in RUN_FILES)
        return own and path.stat().st_mtime >= self.started_at - CLOCK_SLACK_S

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
        newest = newest_run_checkpoint(trainer)
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
        """After a failed ``fit``: if this run created its log folder, took no step and no checkpoint is there,
        delete the files it wrote there, then the folders left empty; True when the log folder is gone."""
        folder = self.log_dir
        if folder is None or not self.created_log_dir or not trainer.is_global_zero or not folder.is_dir():
            return False
        if self.steps_done(trainer) > 0 or any(p.suffix == ".ckpt" for p in folder.rglob("*")):
            return False
        for path in [p for p in folder.rglob("*") if p.is_file() and self.wrote(p)]:
            path.unlink(missing_ok=True)
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            _remove_if_empty(sub)
        if not _remove_if_empty(folder):
            _say(f"removed this run's files from {folder}; kept the folder, which holds files of another run")
            return False
        _say(f"removed the run folder {folder}: the run stopped before its first optimizer step")
        return True


def _remove_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
    except OSError:  # not empty (or gone)
        return not folder.exists()
    return True
