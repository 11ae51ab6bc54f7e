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

Loads are verified. A ``torch.save`` file is a zip archive whose every record (the pickled
structure and each tensor's bytes) carries a CRC-32 of its contents, which ``torch.load`` never
checks: a checkpoint with a few flipped bytes would load and train on with damaged weights.
:func:`verify_checkpoint_file` reads every record and checks its CRC-32 (the same check as
``python -m zipfile -t FILE``; for a file written by any ``torch.save``, this plugin's or not), and
:class:`AtomicCheckpointIO` runs it before each load. Every load error, from a missing, empty,
truncated, damaged or foreign file to a failing unpickle, is a :class:`CheckpointLoadError` naming
the file. Folder checkpoints (``torch.distributed.checkpoint``) are not covered.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
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
        if hasattr(os, "fchmod"):  # mkstemp makes the file private (0600); a checkpoint gets open()'s mode
            os.fchmod(fd, default_file_mode())
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


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the process umask."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)  # no /proc: read the umask by setting it (and put it back at once)
    os.umask(mask)
    return 0o666 & ~mask


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
    """``TorchCheckpointIO`` whose local writes are atomic (temp file, fsync, ``os.replace``) and whose
    loads are verified (every record's CRC-32) and name the file in every error."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint does not take storage_options")
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))

    def load_checkpoint(self, path: _PATH, **kwargs: Any) -> dict[str, Any]:
        """Verify the file's checksums, then load it (``map_location``, ``weights_only`` as Lightning's);
        every failure names the file."""
        if not isinstance(get_filesystem(path), LocalFileSystem):
            return super().load_checkpoint(path, **kwargs)
        local = Path(str(path).removeprefix("file://"))
        if local.is_dir():  # a torch.distributed.checkpoint folder: the strategy reads it, not this plugin
            return super().load_checkpoint(path, **kwargs)
        verify_checkpoint_file(local)
        try:
            return super().load_checkpoint(path, **kwargs)
        except Exception as error:
            raise CheckpointLoadError(f"cannot load checkpoint {str(local)!r}: {type(error).__name__}: {error}") from error


class CheckpointLoadError(RuntimeError):
    """A checkpoint file that is missing, empty, damaged or not a checkpoint; the message names it."""


CHUNK_BYTES = 1 << 24


def verify_checkpoint_file(path: str | os.PathLike[str]) -> None:
    """Check that ``path`` is a complete ``torch.save`` archive whose records all match their CRC-32.

    Raises :class:`CheckpointLoadError` naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointLoadError(f"checkpoint {str(path)!r} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointLoadError(
            f"checkpoint {str(path)!r} is empty (0 bytes): the write that made it did not finish; "
            "use an earlier checkpoint"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointLoadError(
            f"checkpoint {str(path)!r} ({size} bytes) is not a torch.save archive: truncated, or another kind "
            "of file (no zip directory at its end)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            if not any(info.filename.endswith("data.pkl") for info in records):
                raise CheckpointLoadError(
                    f"checkpoint {str(path)!r} is a zip archive but not a torch.save file (no data.pkl record)"
                )
            for info in records:
                with archive.open(info) as record:  # zipfile checks the CRC-32 at the record's end
                    while record.read(CHUNK_BYTES):
                        pass
    except CheckpointLoadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as error:
        raise CheckpointLoadError(
            f"checkpoint {str(path)!r} is damaged ({type(error).__name__}: {error}); "
            "it fails its checksum, do not train from it: use an earlier checkpoint"
        ) from error
