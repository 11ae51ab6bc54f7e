"""The checkpoint CRC covers every byte of every record, however large.

``verify_checkpoint_file`` reads records in chunks of ``CHUNK_BYTES`` (16 MiB); zipfile checks a
record's CRC-32 only when the record has been read to its end. A reader that stops after the first
chunk checks nothing on records larger than a chunk, and the damage tests elsewhere use a 16 KiB
tensor, so this file damages a record of a few chunks: in its first chunk, just past a chunk
boundary, and in its last byte.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from lightning_grpo.checkpoint_io import CHUNK_BYTES, AtomicCheckpointIO, CheckpointLoadError, verify_checkpoint_file


def record_span(path: Path, suffix: str) -> tuple[int, int]:
    """[start, end) byte offsets in the file of the stored (uncompressed) record whose name ends with ``suffix``."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    assert info.compress_type == zipfile.ZIP_STORED
    with path.open("rb") as file:
        file.seek(info.header_offset + 26)
        name_len = int.from_bytes(file.read(2), "little")
        extra_len = int.from_bytes(file.read(2), "little")
    start = info.header_offset + 30 + name_len + extra_len
    return start, start + info.file_size


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([byte ^ 0x10]))


@pytest.fixture(scope="module")
def large_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[int, int]]:
    """A checkpoint whose one tensor record spans 2.5 chunks (40 MiB of float32 at 16 MiB chunks)."""
    path = tmp_path_factory.mktemp("crc") / "large.ckpt"
    numel = (CHUNK_BYTES * 5 // 2) // 4
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.arange(numel, dtype=torch.float32)}}, path)
    span = record_span(path, "data/0")
    assert span[1] - span[0] == numel * 4 > 2 * CHUNK_BYTES
    return path, span


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda start, end: start + 1000, id="first-chunk"),
        pytest.param(lambda start, end: start + CHUNK_BYTES + 7, id="past-first-chunk"),
        pytest.param(lambda start, end: start + 2 * CHUNK_BYTES + 123, id="third-chunk"),
        pytest.param(lambda start, end: end - 1, id="last-byte"),
    ],
)
def test_damage_anywhere_in_a_large_record_is_refused(large_checkpoint, where, tmp_path: Path) -> None:
    source, (start, end) = large_checkpoint
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(source.read_bytes())
    verify_checkpoint_file(damaged)  # intact copy passes
    flip_byte(damaged, where(start, end))
    with pytest.raises(CheckpointLoadError, match="damaged") as error:
        verify_checkpoint_file(damaged)
    assert str(damaged) in str(error.value)
