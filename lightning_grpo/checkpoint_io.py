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
the file.

A failed write (disk full, a file-size limit, a quota) raises :class:`CheckpointWriteError` naming the
target, the errno's text and the free space left on that filesystem; the target still holds the
previous checkpoint, since only the temporary file was written.

Folder checkpoints (``torch.distributed.checkpoint``, FSDP2's sharded saves) carry no checksums of
their own. :func:`write_folder_manifest` records every file's size and CRC-32 in
``checksums.json`` once a save has finished (``lightning_grpo.callbacks.PeriodicCheckpoint`` does
it after each folder save), and :func:`verify_checkpoint_folder` checks a folder before it is loaded:
``.metadata`` readable, every shard file it references present and long enough for the byte ranges
it records, Lightning's ``meta.pt`` a sound archive, and, where the manifest exists, every file's size
and CRC-32. Errors are :class:`CheckpointLoadError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import zipfile
import zlib
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
    try:
        fd, temp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as error:
        raise CheckpointWriteError.of(path, error) from error
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes the file private (0600); a checkpoint gets open()'s mode
            os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        cause = _write_os_error(error)
        if cause is not None:
            raise CheckpointWriteError.of(path, cause) from error
        raise
    _fsync_directory(path.parent)


WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES}


def _write_os_error(error: BaseException) -> OSError | None:
    """The OSError behind a failed write: ``torch.save`` reports a failed ``write`` as a RuntimeError of
    its zip writer ("unexpected pos ...") whose context is the OSError; None when there is none."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in WRITE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, file-size limit, quota, read-only); names the
    target and the free space. The target still holds what it held before."""

    @classmethod
    def of(cls, path: Path, cause: OSError) -> "CheckpointWriteError":
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:,.1f} MiB free"
        except OSError:
            free = "free space unknown"
        previous = (
            f"the previous checkpoint at {str(path)!r} is intact" if path.is_file()
            else f"nothing was written at {str(path)!r}"
        )
        return cls(
            cause.errno,
            f"cannot write checkpoint {str(path)!r}: {cause.strerror or cause} (errno {cause.errno}); "
            f"{free} on the filesystem of {str(path.parent)!r}; {previous}; free space or lower the file-size "
            "limit, then resume from the newest checkpoint",
        )

    def __str__(self) -> str:
        return str(self.strerror)


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
        if local.is_dir():  # a torch.distributed.checkpoint folder: checked here, then Lightning reads it
            verify_checkpoint_folder(local)
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


# ---- folder checkpoints (torch.distributed.checkpoint) ---------------------------------------------
MANIFEST_NAME = "checksums.json"
DCP_METADATA = ".metadata"  # torch.distributed.checkpoint's index of every tensor's file and byte range
LIGHTNING_METADATA = "meta.pt"  # what Lightning's ModelParallelStrategy saves beside the shards


def _crc32(path: Path) -> int:
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
    return crc


def write_folder_manifest(folder: str | os.PathLike[str]) -> Path:
    """Record the size and CRC-32 of every file in a finished checkpoint folder in ``checksums.json``
    (written atomically); returns its path."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME and not p.name.endswith(TEMP_SUFFIX))
    entries = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "crc32": _crc32(p)} for p in files}
    target = folder / MANIFEST_NAME
    fd, temp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=TEMP_SUFFIX, dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump({"files": entries}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, target)
    return target


def verify_checkpoint_folder(folder: str | os.PathLike[str]) -> None:
    """Check a ``torch.distributed.checkpoint`` folder before loading it; raises
    :class:`CheckpointLoadError` naming the missing, truncated or damaged file.

    Checks ``.metadata`` (present, readable), every shard file it references (present, at least as long
    as the byte ranges it records), Lightning's ``meta.pt`` where the folder has one (a sound archive),
    and, when ``checksums.json`` is there, every listed file's size and CRC-32. Without the manifest a
    flipped byte inside a shard cannot be seen (the format has no checksums).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(folder)!r} does not exist")
    index = folder / DCP_METADATA
    if not index.is_file():
        raise CheckpointLoadError(
            f"checkpoint folder {str(folder)!r} has no {DCP_METADATA} file: the sharded save did not finish, or it "
            "is not a torch.distributed.checkpoint folder; use an earlier checkpoint"
        )
    manifest = _read_manifest(folder)
    if manifest is not None:
        for name, entry in manifest.items():
            _check_listed_file(folder / name, entry)
    try:
        from torch.distributed.checkpoint import FileSystemReader

        metadata = FileSystemReader(str(folder)).read_metadata()
    except Exception as error:
        raise CheckpointLoadError(
            f"checkpoint file {str(index)!r} is damaged ({type(error).__name__}: {error}); use an earlier checkpoint"
        ) from error
    needed: dict[str, int] = {}  # shard file -> bytes its recorded ranges reach
    for info in (metadata.storage_data or {}).values():
        end = int(info.offset) + int(info.length)
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), end)
    for name, end in sorted(needed.items()):
        shard = folder / name
        if not shard.is_file():
            raise CheckpointLoadError(
                f"checkpoint shard {str(shard)!r} is missing (listed in {DCP_METADATA}); the folder is incomplete: "
                "use an earlier checkpoint"
            )
        size = shard.stat().st_size
        if size < end:
            raise CheckpointLoadError(
                f"checkpoint shard {str(shard)!r} is truncated: {size} bytes, but {DCP_METADATA} records data up to "
                f"byte {end}; use an earlier checkpoint"
            )
    if (folder / LIGHTNING_METADATA).exists():
        verify_checkpoint_file(folder / LIGHTNING_METADATA)


def _read_manifest(folder: Path) -> dict[str, dict[str, int]] | None:
    path = folder / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        return {str(k): {"bytes": int(v["bytes"]), "crc32": int(v["crc32"])} for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointLoadError(f"checkpoint manifest {str(path)!r} is damaged ({type(error).__name__}: {error})") from error


def _check_listed_file(path: Path, entry: dict[str, int]) -> None:
    if not path.is_file():
        raise CheckpointLoadError(
            f"checkpoint file {str(path)!r} is missing (listed in {MANIFEST_NAME}); use an earlier checkpoint"
        )
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise CheckpointLoadError(
            f"checkpoint file {str(path)!r} is {size} bytes, {MANIFEST_NAME} records {entry['bytes']}: truncated or "
            "rewritten; use an earlier checkpoint"
        )
    if _crc32(path) != entry["crc32"]:
        raise CheckpointLoadError(
            f"checkpoint file {str(path)!r} is damaged: its CRC-32 differs from the one in {MANIFEST_NAME}; "
            "do not train from it: use an earlier checkpoint"
        )
