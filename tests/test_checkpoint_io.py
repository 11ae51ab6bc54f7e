"""Atomic checkpoint writes: SIGKILL mid-write leaves the previous checkpoint loadable at the path.

Verified loads: a checkpoint with flipped bytes, an empty, truncated or foreign file is refused with an
error that names the file, before any weight reaches the model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from lightning_grpo.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointLoadError,
    CheckpointWriteError,
    TEMP_SUFFIX,
    temp_prefix,
    verify_checkpoint_file,
    verify_checkpoint_folder,
    write_folder_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
BIG_TENSORS, BIG_NUMEL = 32, 1 << 20  # 32 × 4 MiB float32 = 128 MiB


def _temp_files(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f"{temp_prefix(target)}*{TEMP_SUFFIX}"))


def test_save_load_round_trip_and_no_temp_left(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "sub" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.arange(4.0)}, target)
    io.save_checkpoint({"step": 2, "w": torch.arange(5.0)}, target)  # overwrite in place
    loaded = io.load_checkpoint(target)
    assert loaded["step"] == 2 and torch.equal(loaded["w"], torch.arange(5.0))
    assert _temp_files(target) == []
    with pytest.raises(TypeError):
        io.save_checkpoint({}, target, storage_options={"x": 1})


def test_checkpoint_gets_the_mode_of_any_new_file(tmp_path: Path) -> None:
    """Not mkstemp's private 0600: others in the group can read a checkpoint as they can any file."""
    target, plain = tmp_path / "last.ckpt", tmp_path / "plain.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, target)
    torch.save({"step": 1}, plain)
    assert (target.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


def test_failed_serialisation_keeps_previous_file_and_cleans_up(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    with pytest.raises(Exception):
        io.save_checkpoint({"step": 2, "bad": lambda: None}, target)  # lambdas do not pickle
    assert io.load_checkpoint(target)["step"] == 1
    assert _temp_files(target) == []


@pytest.mark.slow
def test_trainer_uses_the_plugin(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel

    trainer = Trainer(
        default_root_dir=tmp_path, max_steps=2, plugins=[AtomicCheckpointIO()], logger=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    trainer.fit(BoringModel())
    checkpoints = list(tmp_path.rglob("*.ckpt"))
    assert len(checkpoints) == 1 and torch.load(checkpoints[0], weights_only=False)["global_step"] == 2


def _writer(target: str) -> None:
    """Child process: save a small checkpoint, then a large one (killed by the parent mid-write)."""
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.arange(8.0)}, target)
    print("saved-first", flush=True)
    big = {f"t{i}": torch.full((BIG_NUMEL,), float(i)) for i in range(BIG_TENSORS)}
    io.save_checkpoint({"step": 2, **big}, target)
    print("saved-second", flush=True)


@pytest.mark.slow
def test_sigkill_mid_write_leaves_previous_checkpoint_loadable(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen([sys.executable, __file__, str(target)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "saved-first"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the big write is under way, then kill it
            temps = _temp_files(target)
            if temps and temps[0].stat().st_size > 4 << 20:
                break
            time.sleep(0.001)
        else:
            pytest.fail("the large checkpoint's temporary file never appeared")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    temps = _temp_files(target)
    assert len(temps) == 1 and temps[0].stat().st_size < BIG_TENSORS * BIG_NUMEL * 4  # really cut mid-write
    # The target is the first checkpoint, whole.
    loaded = AtomicCheckpointIO().load_checkpoint(target)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], torch.arange(8.0))
    # The next save replaces it and removes the partial file the killed writer left.
    AtomicCheckpointIO().save_checkpoint({"step": 3}, target)
    assert torch.load(target)["step"] == 3 and _temp_files(target) == []


# ---- verified loads ------------------------------------------------------------------------------
def _saved(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "step=7.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 7, "w": torch.linspace(-1, 1, 4096)}, path)
    return path, path.read_bytes()


def _record_span(data: bytes, suffix: str) -> tuple[int, int]:
    """Byte range of a record's contents (stored uncompressed, as torch.save writes them)."""
    import zipfile
    from io import BytesIO

    with zipfile.ZipFile(BytesIO(data)) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"), int.from_bytes(
        data[info.header_offset + 28 : info.header_offset + 30], "little"
    )
    start = info.header_offset + 30 + name_len + extra_len
    return start, start + info.file_size


@pytest.mark.parametrize("record", ["data/0", "data.pkl"])
def test_flipped_bytes_are_refused_naming_the_file(record: str, tmp_path: Path) -> None:
    path, data = _saved(tmp_path)
    start, end = _record_span(data, record)
    damaged = bytearray(data)
    for offset in (start + 3, (start + end) // 2, end - 2):  # a few flipped bits inside the record
        damaged[offset] ^= 0x10
    path.write_bytes(bytes(damaged))
    if record == "data/0":  # the damage is silent to torch.load: the weights just differ
        assert not torch.equal(torch.load(path)["w"], torch.linspace(-1, 1, 4096))
    with pytest.raises(CheckpointLoadError, match=rf"{path}.*damaged.*CRC"):
        AtomicCheckpointIO().load_checkpoint(path)


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "is empty"),
        (b"\x80\x04not a checkpoint at all" * 50, "not a torch.save archive"),
        (None, "not a torch.save archive"),  # the first half of a real checkpoint
    ],
)
def test_empty_random_or_truncated_files_are_refused_naming_the_file(content: bytes | None, why: str, tmp_path: Path) -> None:
    path, data = _saved(tmp_path)
    path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(CheckpointLoadError, match=rf"{path}.*{why}"):
        AtomicCheckpointIO().load_checkpoint(path)


def test_other_load_errors_name_the_file(tmp_path: Path) -> None:
    import zipfile

    foreign = tmp_path / "foreign.ckpt"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("readme.txt", "a zip, not a checkpoint")
    with pytest.raises(CheckpointLoadError, match=rf"{foreign}.*no data.pkl"):
        verify_checkpoint_file(foreign)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing.ckpt")):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "missing.ckpt")
    # A sound archive whose unpickling fails (an object weights_only refuses): the error names the file.
    pickled = tmp_path / "object.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "path": Path("x")}, pickled)
    with pytest.raises(CheckpointLoadError, match=rf"cannot load checkpoint .*{pickled.name}"):
        AtomicCheckpointIO().load_checkpoint(pickled, weights_only=True)


@pytest.mark.slow
def test_trainer_refuses_a_damaged_checkpoint_before_restoring(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel

    def trainer() -> Trainer:
        return Trainer(default_root_dir=tmp_path, max_steps=2, plugins=[AtomicCheckpointIO()], logger=False,
                       enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)

    trainer().fit(BoringModel())
    (checkpoint,) = tmp_path.rglob("*.ckpt")
    data = bytearray(checkpoint.read_bytes())
    start, end = _record_span(bytes(data), "data/0")
    data[(start + end) // 2] ^= 0x01
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(CheckpointLoadError, match=str(checkpoint)):
        trainer().fit(BoringModel(), ckpt_path=checkpoint)


# ---- disk full -----------------------------------------------------------------------------------
def test_disk_full_names_the_path_and_free_space_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault-injecting writer: the file object fails with ENOSPC after 4 KiB, as a full disk does
    (torch.save reports it as an opaque RuntimeError of its zip writer; the OSError is its context)."""
    import errno

    import lightning_grpo.checkpoint_io as checkpoint_io

    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.arange(8.0)}, target)
    real_save = torch.save

    class FullDisk:
        def __init__(self, f: Any) -> None:
            self.f, self.written = f, 0

        def write(self, data: Any) -> int:
            self.written += len(data)
            if self.written > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

    monkeypatch.setattr(checkpoint_io.torch, "save", lambda obj, f: real_save(obj, FullDisk(f)))
    with pytest.raises(CheckpointWriteError, match=rf"cannot write checkpoint '{target}': No space left on device "
                       r"\(errno 28\); [\d,.]+ MiB free on the filesystem of .*the previous checkpoint .* is intact") as caught:
        io.save_checkpoint({"step": 2, "w": torch.zeros(1 << 16)}, target)
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.setattr(checkpoint_io.torch, "save", real_save)
    assert io.load_checkpoint(target)["step"] == 1
    assert _temp_files(target) == []


# ---- folder (torch.distributed.checkpoint) checkpoints ----------------------------------------------
def _dcp_folder(folder: Path, manifest: bool = True) -> Path:
    import warnings

    import torch.distributed.checkpoint as dcp

    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save({"state_dict": {f"w{i}": torch.full((32, 32), float(i)) for i in range(3)}}, checkpoint_id=str(folder))
    torch.save({"global_step": 3}, folder / "meta.pt")
    if manifest:
        write_folder_manifest(folder)
    return folder


def _shard(folder: Path) -> Path:
    (shard,) = folder.glob("*.distcp")
    return shard


@pytest.mark.parametrize("manifest", [True, False])
@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped", "no index", "meta.pt truncated"])
def test_damaged_folder_checkpoints_are_refused_naming_the_file(damage: str, manifest: bool, tmp_path: Path) -> None:
    folder = _dcp_folder(tmp_path / "step=3.ckpt", manifest)
    verify_checkpoint_folder(folder)  # sound as written
    shard = _shard(folder)
    named, why = shard, {"missing": "missing", "truncated": "truncated|bytes", "flipped": "damaged"}.get(damage)
    if damage == "missing":
        shard.unlink()
    elif damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:-100])
    elif damage == "flipped":
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0x01
        shard.write_bytes(bytes(data))
    elif damage == "no index":
        (folder / ".metadata").unlink()
        named, why = folder, "no .metadata"
    else:
        meta = folder / "meta.pt"
        meta.write_bytes(meta.read_bytes()[:50])
        named, why = meta, "truncated|not a torch.save archive|bytes"
    if damage == "flipped" and not manifest:  # the format has no checksum: only the manifest sees a flipped byte
        verify_checkpoint_folder(folder)
        return
    with pytest.raises(CheckpointLoadError, match=rf"'{named}'.*({why})"):
        verify_checkpoint_folder(folder)
    with pytest.raises(CheckpointLoadError, match=rf"'{named}'"):  # the plugin checks a folder before Lightning reads it
        AtomicCheckpointIO().load_checkpoint(folder)


def test_the_strategy_checks_a_folder_before_it_loads_one(tmp_path: Path) -> None:
    """ModelParallelStrategy (FSDP2) reads folders without the checkpoint IO: InterruptCheckpoint.setup
    wraps its load_checkpoint so the folder is checked first (a stand-in strategy records the loads)."""
    from types import SimpleNamespace

    from lightning_grpo.callbacks import InterruptCheckpoint

    loaded: list[str] = []
    strategy = SimpleNamespace(load_checkpoint=lambda path, weights_only=None: loaded.append(str(path)) or {})
    InterruptCheckpoint().setup(SimpleNamespace(strategy=strategy), None, "fit")  # type: ignore[arg-type]
    InterruptCheckpoint().setup(SimpleNamespace(strategy=strategy), None, "fit")  # type: ignore[arg-type]  (wrapped once)
    folder = _dcp_folder(tmp_path / "step=3.ckpt")
    strategy.load_checkpoint(folder)
    _shard(folder).write_bytes(_shard(folder).read_bytes()[:64])
    with pytest.raises(CheckpointLoadError, match=rf"'{_shard(folder)}'"):
        strategy.load_checkpoint(folder, weights_only=False)
    assert loaded == [str(folder)]  # the damaged folder never reached the strategy's own load


def test_periodic_checkpoint_writes_a_manifest_after_a_folder_save(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from lightning_grpo.callbacks import PeriodicCheckpoint

    folder = tmp_path / "step=3.ckpt"
    trainer = SimpleNamespace(global_step=3, is_global_zero=True, loggers=[],
                              save_checkpoint=lambda path, weights_only=False: _dcp_folder(Path(path), manifest=False))
    PeriodicCheckpoint(dirpath=str(tmp_path), every_n_train_steps=1)._save_checkpoint(trainer, str(folder))
    listed = json.loads((folder / "checksums.json").read_text())["files"]
    assert sorted(listed) == sorted(p.name for p in folder.iterdir() if p.name != "checksums.json")
    data = bytearray(_shard(folder).read_bytes())
    data[7] ^= 0x40
    _shard(folder).write_bytes(bytes(data))
    with pytest.raises(CheckpointLoadError, match="CRC-32"):
        verify_checkpoint_folder(folder)


if __name__ == "__main__":
    _writer(sys.argv[1])
