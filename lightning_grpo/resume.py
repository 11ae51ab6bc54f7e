"""``--ckpt_path=last`` finds this run's newest checkpoint, and a resumed run logs into the folder it resumes.

Lightning resolves ``last`` from the checkpoint callback's folder, which for a new run is the new
``version_N+1/checkpoints``: empty, so every ``--ckpt_path=last`` started from scratch (with a hint to
set ``save_last``, which was set). :func:`resolve_checkpoint_path` works on the parsed configuration,
before anything is built:

- ``last`` becomes the newest checkpoint (by write time: ``last.ckpt``, ``step=K.ckpt`` or an
  interrupt checkpoint) of the newest ``<save_dir>/<name>/version_N/checkpoints`` that holds one (the
  logger's folder; Lightning's default logger: ``<default_root_dir>/lightning_logs``), or of the
  folder a configured ``ModelCheckpoint`` names with ``dirpath``; none there is a
  :class:`~lightning_grpo.errors.ConfigurationError` naming the folder looked in.
- for ``fit``, a checkpoint inside ``<save_dir>/<name>/version_N/checkpoints/`` (``last`` or an explicit
  path) sets a ``TensorBoardLogger``'s ``version`` to N, so the resumed run appends to the same
  TensorBoard run and checkpoint folder instead of starting ``version_N+1``. Only TensorBoard's: a
  ``CSVLogger`` in a non-empty folder deletes its ``metrics.csv`` and rewrites ``hparams.yaml``, so a
  CSV run resumes into a new ``version_N+1`` (the line says so) and the first part's files stay. A
  logger whose config names a version keeps it.
- a run resumed into its own version folder keeps that folder's ``config.yaml`` (the first part's) and
  saves its own as ``config_resumed_step{K}.yaml`` (K: the checkpoint's step), through
  :func:`resumed_config_filename`; TensorBoard writes ``hparams.yaml`` only where there is none, so the
  first part's stays too.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_grpo.checkpoint_paths import newest_checkpoint, newest_checkpoint_in
from lightning_grpo.errors import ConfigurationError

DEFAULT_LOGGER = "lightning.pytorch.loggers.TensorBoardLogger"  # what Trainer(logger=True) builds
DEFAULT_LOGGER_NAME = "lightning_logs"
_VERSION = re.compile(r"version_(\d+)")


def _imported(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def as_list(value: Any) -> list[Any]:
    """A Trainer option that takes one item or a list of them (``callbacks``, ``plugins``, ``logger``) as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def explicit_checkpoint_dirs(trainer: Namespace) -> list[Path]:
    """Folders that configured ``ModelCheckpoint`` callbacks name with ``dirpath``."""
    found = []
    for callback in as_list(trainer.get("callbacks")):
        if not isinstance(callback, Namespace) or not isinstance(callback.get("class_path"), str):
            continue
        cls = _imported(callback.class_path)
        dirpath = (callback.get("init_args") or Namespace()).get("dirpath")
        if dirpath and isinstance(cls, type) and issubclass(cls, ModelCheckpoint):
            found.append(Path(dirpath))
    return found


def folder_loggers(trainer: Namespace) -> list[Namespace]:
    """The configured loggers that write ``<save_dir>/<name>/version_N`` (Lightning's default one made explicit);
    empty when logging is off."""
    logger = trainer.get("logger")
    if logger is False:
        return []
    if logger is None or logger is True:
        root = trainer.get("default_root_dir") or "."
        return [Namespace(class_path=DEFAULT_LOGGER, init_args=Namespace(save_dir=str(root), name=DEFAULT_LOGGER_NAME))]
    loggers = []
    for item in as_list(logger):
        init_args = item.get("init_args") if isinstance(item, Namespace) else None
        if init_args is not None and init_args.get("save_dir") is not None and "version" in _init_parameters(item):
            loggers.append(item)
    return loggers


def _init_parameters(logger: Namespace) -> set[str]:
    import inspect

    cls = _imported(logger.class_path)
    return set(inspect.signature(cls).parameters) if isinstance(cls, type) else set()


def run_root(logger: Namespace) -> Path:
    """``<save_dir>/<name>``: the folder that holds the logger's ``version_N`` folders."""
    init_args = logger.init_args
    name = init_args.get("name", DEFAULT_LOGGER_NAME)
    return Path(init_args.save_dir) / name if name else Path(init_args.save_dir)


def version_folders(root: Path) -> list[tuple[int, Path]]:
    """``root/version_N`` folders, newest (highest N) first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _VERSION.fullmatch(p.name))]
    return sorted(found, reverse=True)


def checkpoint_version(path: Path, root: Path) -> int | None:
    """N when ``path`` lies in ``root/version_N/checkpoints/``, else None."""
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    parts = relative.parts
    match = _VERSION.fullmatch(parts[0]) if len(parts) >= 3 and parts[1] == "checkpoints" else None
    return int(match.group(1)) if match else None


def find_last(trainer: Namespace) -> Path:
    """The checkpoint ``--ckpt_path=last`` means for a run configured with these Trainer options."""
    dirs = explicit_checkpoint_dirs(trainer)
    loggers = folder_loggers(trainer)
    if dirs:
        looked, found = ", ".join(map(str, dirs)), newest_checkpoint_in(dirs)
    elif not loggers:
        folder = Path(trainer.get("default_root_dir") or ".") / "checkpoints"
        looked, found = str(folder), newest_checkpoint(folder)
    else:
        root = run_root(loggers[0])
        version = loggers[0].init_args.get("version")
        if version is not None:
            folders = [root / (version if isinstance(version, str) else f"version_{version}")]
        else:
            folders = [p for _, p in version_folders(root)]
        looked = f"{root}/{'version_*' if version is None else folders[0].name}/checkpoints"
        found = next((p for p in (newest_checkpoint(f / "checkpoints") for f in folders) if p is not None), None)
    if found is None:
        raise ConfigurationError(
            f"--ckpt_path=last: no checkpoint in {looked} (nothing to resume; give a checkpoint's path, or drop --ckpt_path)"
        )
    return found


def checkpoint_step(path: Path) -> int | None:
    """The global step a checkpoint was saved at: read from the file (memory-mapped: no tensor is read) or a
    folder's Lightning ``meta.pt``, else a ``step=K`` in its name; None when neither says."""
    source = path / "meta.pt" if path.is_dir() else path
    try:
        step = torch.load(source, map_location="cpu", weights_only=True, mmap=True).get("global_step")
    except Exception:  # unreadable here: the resume itself reports a bad checkpoint, naming it
        step = None
    if isinstance(step, int):
        return step
    match = re.search(r"step=(\d+)", path.name)
    return int(match.group(1)) if match else None


def resumed_config_filename(ckpt_path: Path) -> str:
    """What a run resumed into an existing version folder names its config (that folder's ``config.yaml`` stays)."""
    step = checkpoint_step(ckpt_path)
    return "config_resumed.yaml" if step is None else f"config_resumed_step{step}.yaml"


@dataclass(frozen=True)
class Resumption:
    """What :func:`resolve_checkpoint_path` did: the line to print, and the existing version folder the run's
    log folder now is (None when it gets a new one)."""

    message: str
    log_dir: Path | None


def _is_tensorboard(logger: Namespace) -> bool:
    cls = _imported(logger.class_path)
    return isinstance(cls, type) and issubclass(cls, TensorBoardLogger)


def resolve_checkpoint_path(section: Namespace, pin_version: bool) -> Resumption | None:
    """Rewrite ``section.ckpt_path`` (``last`` to a path) and, with ``pin_version``, the TensorBoard loggers'
    version; None when there was nothing to do."""
    ckpt_path = section.get("ckpt_path")
    if not ckpt_path:
        return None
    trainer = section.trainer
    said = []
    if ckpt_path == "last":
        ckpt_path = str(find_last(trainer))
        section.ckpt_path = ckpt_path
        said.append(f"--ckpt_path=last: resuming from {ckpt_path}")
    loggers = folder_loggers(trainer)
    log_dir = None
    if pin_version and loggers and all(l.init_args.get("version") is None for l in loggers):
        root = run_root(loggers[0])
        version = checkpoint_version(Path(ckpt_path), root)
        same_root = [l for l in loggers if run_root(l).resolve() == root.resolve()]
        if version is not None:
            folder = root / f"version_{version}"
            if trainer.get("logger") in (None, True):
                trainer.logger = loggers[0]
            pinned = [l for l in same_root if _is_tensorboard(l)]
            for logger in pinned:
                logger.init_args.version = version
            if pinned:
                said.append(f"logging into {folder}")
            for logger in same_root:
                if not any(logger is p for p in pinned):
                    name = logger.class_path.rpartition(".")[2]
                    why = f" (it would replace {folder / 'metrics.csv'})" if "CSV" in name else ""
                    said.append(f"{name} logging into a new version folder under {root}{why}")
            first = as_list(trainer.get("logger"))[:1]
            if first and any(first[0] is p for p in pinned):
                log_dir = folder
    return Resumption(", ".join(said), log_dir) if said else None
