"""Atomic checkpoint files: a process killed while saving leaves the previous checkpoint intact.

Lightning's ``TorchCheckpointIO`` serialises the whole checkpoint into memory and then writes it
through an fsspec transaction whose temporary file lives in the system temp directory (often another
filesystem, where the final move is a copy) and is never fsynced. :class:`AtomicCheckpointIO`
instead streams ``torch.save`` into a temporary file *in the target's directory*, flushes and fsyncs
it, ``os.replace``s it onto the target (an atomic rename on POSIX and Windows) and fsyncs the
directory. At every instant the target path holds either the old complete file or the new complete
file; a SIGKILL or power loss mid-write leaves at most a hidden ``.<name>.*.tmp`` file beside it,
which the next save to the same target removes.

Non-local paths (``s3://``, ``gs://``, ...) fall back to Lightning's own writer. Use it with
``Trainer(plugins=[AtomicCheckpointIO()])`` or, in a config, ``trainer.plugins:
lightning_grpo.checkpoint_io.AtomicCheckpointIO``. Under ``ModelParallelStrategy`` with
``save_distributed_checkpoint=True`` (the default) Lightning writes a directory with
``torch.distributed.checkpoint`` and does not call a ``CheckpointIO``; this plugin covers the
single-file checkpoints (one process, DDP, and FSDP2 with ``save_distributed_checkpoint=False``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from fsspec.implementations.local import LocalFileSystem


def temp_prefix(path: Path) -> str:
    """The name prefix of the temporary files written for ``path`` (hidden, same directory)."""
    return f".{path.name}."


TEMP_SUFFIX = ".tmp"


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, temp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete temporary files a killed writer left for ``path``; returns what was removed."""
    stale = [p for p in path.parent.glob(f"{temp_prefix(path)}*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (the directory entry); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic: temp file, fsync, ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint does not take storage_options")
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))
