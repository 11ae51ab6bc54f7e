"""Callbacks that make a run's first hour uneventful; ``lightning-grpo`` adds them to every run.

- :class:`InterruptCheckpoint`: Ctrl-C, SIGTERM or an exception during ``fit`` saves the state after the
  last completed rollout, a checkpoint that resumes exactly.
- :class:`PeriodicCheckpoint`: the checkpoint every run gets unless its config names one: every 30
  minutes of training (or every N steps) and at the end, the newest kept; folder (sharded) saves get
  a checksum manifest.
- :func:`step_progress_bar`: the training bar counts optimizer steps, what ``trainer.max_steps``
  counts, also after a resume and across data epochs (Rich when installed, else tqdm).
- :class:`ParameterSummary`: the model summary without the FLOPs Lightning never measured here.
- :class:`FrozenModulesInEvalMode`: Lightning's "Found N module(s) in eval mode" warning is kept unless
  every module in eval mode lies in a frozen submodule (the reference model).
"""

from __future__ import annotations

import copy
import re
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from lightning_grpo.checkpoint_io import CheckpointWriteError, verify_checkpoint_folder, write_folder_manifest
from lightning_grpo.checkpoint_paths import newest_run_checkpoint


# ---- interrupt checkpoint ------------------------------------------------------------------------
@dataclass
class _Boundary:
    """What a checkpoint holds besides weights, optimizer and schedule, at the end of a rollout."""

    step: int  # optimizer steps done
    loops: dict[str, Any]  # Lightning's loop progress, as a checkpoint saved at on_train_batch_end has it
    datamodule: tuple[str, dict[str, Any]] | None  # (checkpoint key, data module state)
    module_extras: dict[str, Any]  # what the LightningModule's on_save_checkpoint adds (RNG states, counters)


_NO_HANDLER = object()


class InterruptCheckpoint(Callback):
    """Ctrl-C or an exception during ``fit`` saves the state after the last completed rollout.

    At the end of every training batch (one rollout and its optimizer steps) this callback keeps the
    small part of a checkpoint that changes within a step: Lightning's loop progress, the data
    module's position (prompt batches, sampling rounds) and what the module adds (every RNG state,
    counters), exactly as an every-n-steps ``ModelCheckpoint`` saves them at that moment. Sampling and
    scoring, most of a step's time, change none of the weights, optimizer or schedule, so when ``fit``
    is interrupted in a rollout before its first optimizer step, those plus the kept part are a
    checkpoint of the last finished step: ``--ckpt_path`` on it continues exactly as an uninterrupted
    run would (tested bitwise). It is written to ``dirpath/interrupted-step=K.ckpt`` (default: the
    ``ModelCheckpoint``'s folder, else ``<log dir>/checkpoints``) through the strategy's checkpoint IO.

    SIGTERM (what SLURM and most schedulers send first, a grace period before SIGKILL) acts as Ctrl-C
    does, at once: it does not wait for the rollout to finish; in ``validate`` it stops the run (nothing
    to save). A Ctrl-C or SIGTERM that arrives during a
    rollout's optimizer steps is held until they are done, then acts at that step's end (a second one
    stops at once, without saving). An exception raised there saves nothing, since the weights are
    between two steps, and says so. The save prints one line first, ``<signal>: saving the state after
    step K to PATH (signal again to abort)``; a second Ctrl-C or SIGTERM during the save abandons it
    with one line naming the newest complete checkpoint, which the atomic writer left intact (no
    traceback). An exception that is itself a failed checkpoint write (disk full) saves nothing more. The module's
    ``on_save_checkpoint`` runs once per step on a scratch dict, so it must stay cheap. One process only:
    with several ranks an exception may reach one rank alone, and a save needs them all; there the
    callback says it did not save.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath
        self.saved: Path | None = None  # the last checkpoint this callback wrote
        self._boundary: _Boundary | None = None
        self._start_step = 0
        self._updating = False  # an optimizer step was taken since the last boundary
        self._stop_requested = False
        self._held_signal = "Ctrl-C"
        self._previous: dict[int, Any] = {}  # signal number -> the handler before ours

    # -- bookkeeping ----------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        verify_folders_before_loading(trainer.strategy)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # `validate` alone: nothing to save, but SIGTERM must stop it at once, as Ctrl-C does (Lightning's own
        # handler only notes it and stops after the batch under way: a long generation ran on until SIGKILL).
        # Within `fit` the training handlers act.
        if trainer.state.fn == "validate" and not self._previous:
            self._install_sigint(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._boundary = None
        self._start_step = trainer.global_step
        self._updating = False
        self._stop_requested = False
        self._install_sigint(trainer)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        self._updating = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._boundary = self._capture(trainer, pl_module)
        self._updating = False
        if self._stop_requested:
            self._stop_requested = False
            if self._held_signal == "SIGTERM":
                raise Terminated("SIGTERM, held until the rollout's optimizer steps were done")
            raise KeyboardInterrupt("Ctrl-C, held until the rollout's optimizer steps were done")

    def _capture(self, trainer: Trainer, pl_module: LightningModule) -> _Boundary:
        loops = copy.deepcopy(trainer._checkpoint_connector._get_loops_state_dict())
        datamodule = None
        if trainer.datamodule is not None:
            state = trainer.datamodule.state_dict()
            if state:
                datamodule = (type(trainer.datamodule).__qualname__, copy.deepcopy(state))
        extras: dict[str, Any] = {}
        pl_module.on_save_checkpoint(extras)
        return _Boundary(trainer.global_step, loops, datamodule, copy.deepcopy(extras))

    # -- the save -------------------------------------------------------------------------------
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_signals()
        if trainer.state.fn != TrainerFn.FITTING:
            return
        name = _cause_name(exception)
        boundary = self._boundary
        if trainer.world_size > 1:
            rank_zero_warn(f"{name}: no interrupt checkpoint with {trainer.world_size} processes (one process only)")
            return
        if isinstance(exception, CheckpointWriteError):
            _say(f"{name}: no interrupt checkpoint either (it would fail alike); {_newest_note(trainer)}")
            return
        if boundary is None:
            rank_zero_info(
                f"{name} before any rollout finished: nothing to save since step {self._start_step}, where the run started"
            )
            return
        if self._updating or trainer.global_step != boundary.step:
            rank_zero_warn(
                f"{name} during the optimizer steps of the rollout after step {boundary.step} (now at step "
                f"{trainer.global_step}): the weights are between two steps, so no interrupt checkpoint was saved; "
                "resume from the last periodic checkpoint"
            )
            return
        path = self._directory(trainer) / f"interrupted-step={boundary.step}.ckpt"
        newest = _newest_note(trainer)  # before the save: what a second signal leaves
        _say(f"{name}: saving the state after step {boundary.step} to {path} (signal again to abort)")
        try:
            with _abort_on_signal():
                checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
                checkpoint["loops"] = boundary.loops
                checkpoint.update(boundary.module_extras)
                if boundary.datamodule is not None:
                    key, state = boundary.datamodule
                    checkpoint[key] = state
                trainer.strategy.save_checkpoint(checkpoint, path)
        except _SaveAborted as aborted:
            _say(f"{aborted.signal_name} during the save: abandoned {path} (no partial file is left); {newest}")
            return
        except Exception as error:  # the run is stopping anyway: one line, not a second traceback
            _say(f"the interrupt checkpoint could not be saved: {type(error).__name__}: {error}; {newest}")
            return
        self.saved = path
        _say(f"saved the state after step {boundary.step} to {path}; continue with --ckpt_path {path}")

    def _directory(self, trainer: Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                return Path(callback.dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"

    # -- Ctrl-C and SIGTERM -----------------------------------------------------------------------
    def _install_sigint(self, trainer: Trainer) -> None:
        if trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _restore_signals(self) -> None:
        for signum, previous in self._previous.items():
            # After a KeyboardInterrupt Lightning ignores further Ctrl-C while it shuts down: leave that as is.
            if signal.getsignal(signum) == self._on_signal:
                default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
                signal.signal(signum, previous if previous is not None else default)
        self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        if self._updating and not self._stop_requested:
            self._stop_requested = True
            self._held_signal = name
            _say(
                f"{name}: finishing this rollout's optimizer steps, then saving a checkpoint "
                f"({name} again stops at once, without one)"
            )
            return
        if signum == signal.SIGTERM:
            raise Terminated("SIGTERM")
        raise KeyboardInterrupt

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore_signals()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt (so Lightning shuts down alike, exit status 1)."""


class _SaveAborted(BaseException):
    """A second Ctrl-C or SIGTERM during the interrupt checkpoint's save."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class _abort_on_signal:
    """Within the block, Ctrl-C or SIGTERM raises :class:`_SaveAborted`; the handlers before it come back after."""

    def __enter__(self) -> None:
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._raise)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise _SaveAborted("SIGTERM" if signum == signal.SIGTERM else "Ctrl-C")

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


def _cause_name(exception: BaseException) -> str:
    if isinstance(exception, Terminated):
        return "SIGTERM"
    if isinstance(exception, KeyboardInterrupt):
        return "Ctrl-C"
    return type(exception).__name__


def _say(message: str) -> None:
    """One line on stderr from rank zero, flushed at once (a scheduler may SIGKILL soon after)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) == 0:
        print(message, file=sys.stderr, flush=True)


def _newest_note(trainer: Trainer) -> str:
    path = newest_run_checkpoint(trainer)
    if path is None:
        return "no earlier checkpoint of this run exists"
    return f"the newest complete checkpoint is {path} (intact)"


def verify_folders_before_loading(strategy: Any) -> None:
    """Make ``strategy.load_checkpoint`` check a folder checkpoint (``verify_checkpoint_folder``) first.

    Lightning's ``ModelParallelStrategy`` (FSDP2) reads ``torch.distributed.checkpoint`` folders itself,
    without the checkpoint IO that checks single files; this wraps its ``load_checkpoint`` on this
    instance (once) so a missing, truncated or damaged shard is refused naming the file before any
    rank loads a weight. Callbacks' ``setup`` runs before Lightning restores a checkpoint."""
    if getattr(strategy, "_verifies_checkpoint_folders", False) or not hasattr(strategy, "load_checkpoint"):
        return
    load = strategy.load_checkpoint

    def load_checkpoint(checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        path = Path(str(checkpoint_path))
        if path.is_dir():
            verify_checkpoint_folder(path)
        return load(checkpoint_path, *args, **kwargs)

    strategy.load_checkpoint = load_checkpoint
    strategy._verifies_checkpoint_folders = True


# ---- periodic checkpoint -------------------------------------------------------------------------
DEFAULT_CHECKPOINT_MINUTES = 30.0


class PeriodicCheckpoint(ModelCheckpoint):
    """The run's regular checkpoint: every ``every_n_minutes`` of training (default 30), or every
    ``every_n_train_steps`` optimizer steps when that is given, and once more when training ends;
    the newest ``save_top_k`` (default 1; -1: all) are kept, named ``step=K.ckpt``.

    ``lightning-grpo`` adds one to every run whose config has no ``ModelCheckpoint`` (a config that
    has one keeps exactly that; ``trainer.enable_checkpointing: false`` turns checkpoints off). In a
    config: ``class_path: lightning_grpo.callbacks.PeriodicCheckpoint`` with ``init_args:
    every_n_train_steps: 50``. A folder checkpoint (FSDP2's sharded save) gets ``checksums.json``
    after it is complete (:func:`~lightning_grpo.checkpoint_io.write_folder_manifest`), which the
    load checks.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_train_steps: int | None = None,
        every_n_minutes: float | None = DEFAULT_CHECKPOINT_MINUTES,
        save_top_k: int = 1,
        save_last: bool | None = None,
        filename: str | None = "{step}",
        save_weights_only: bool = False,
    ) -> None:
        interval = None
        if every_n_train_steps is None and every_n_minutes is not None:
            if every_n_minutes <= 0:
                raise ValueError(f"every_n_minutes must be > 0, got {every_n_minutes}")
            interval = timedelta(minutes=every_n_minutes)
        super().__init__(
            dirpath=dirpath, filename=filename, save_top_k=save_top_k, save_last=save_last, monitor="step", mode="max",
            every_n_train_steps=every_n_train_steps, train_time_interval=interval, save_weights_only=save_weights_only,
        )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_step != self._last_global_step_saved and not trainer.fast_dev_run:
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        if trainer.is_global_zero and Path(filepath).is_dir():
            write_folder_manifest(filepath)


# ---- progress bar --------------------------------------------------------------------------------
TRAIN_DESCRIPTION = "Optimizer steps"


class _CountsOptimizerSteps:
    """Progress-bar mixin: the training bar shows ``trainer.global_step`` out of ``trainer.max_steps``."""

    trainer: Trainer

    @property
    def total_train_batches(self) -> int | float:
        max_steps = self.trainer.max_steps
        return max_steps if max_steps >= 0 else float("inf")

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)  # type: ignore[misc]
        items.pop("v_num", None)  # the run's folder says it; the bar showed it as a float
        return items


class RichStepProgressBar(_CountsOptimizerSteps, RichProgressBar):
    """Lightning's Rich bar, counting optimizer steps up to ``max_steps`` instead of batches per epoch."""

    def _get_train_description(self, current_epoch: int) -> str:
        width = max(len(TRAIN_DESCRIPTION), len(self.validation_description))
        return f"{TRAIN_DESCRIPTION:{width}}"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        # A resumed run starts mid-epoch (the prompt stream is one endless epoch): Lightning calls no
        # on_train_epoch_start then, so the bar is set up here, at the step the run starts from.
        if self.progress is not None and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._update(self.train_progress_bar_id, trainer.global_step)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()


class TQDMStepProgressBar(_CountsOptimizerSteps, TQDMProgressBar):
    """Lightning's tqdm bar, counting optimizer steps up to ``max_steps`` instead of batches per epoch."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        # A resumed run starts mid-epoch (the prompt stream is one endless epoch): Lightning calls no
        # on_train_epoch_start then, so the bar is set up here, at the step the run starts from.
        self._show_steps(trainer)

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        self._show_steps(trainer)

    def _show_steps(self, trainer: Trainer) -> None:
        bar = self.train_progress_bar
        bar.total = convert_inf(self.total_train_batches)
        bar.set_description(TRAIN_DESCRIPTION)
        bar.initial = trainer.global_step  # the rate counts this run's steps
        if not bar.disable:
            bar.n = trainer.global_step
            bar.refresh()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        bar = self.train_progress_bar
        step = trainer.global_step
        if bar is None or not self.is_enabled:
            return
        if (batch_idx + 1) % self.refresh_rate == 0 or step == bar.total:
            if not bar.disable:
                bar.n = step
                bar.refresh()
            bar.set_postfix(self.get_metrics(trainer, pl_module))


def step_progress_bar(**kwargs: Any) -> ProgressBar:
    """The step-counting bar in Lightning's default style: Rich when installed, else tqdm."""
    return RichStepProgressBar(**kwargs) if _RICH_AVAILABLE else TQDMStepProgressBar(**kwargs)


# ---- model summary and eval-mode modules ---------------------------------------------------------
class ParameterSummary(ModelSummary):
    """Lightning's model summary (name, type, parameters, mode), without a FLOPs column of zeros.

    Lightning counts FLOPs only from an ``example_input_array``, which a policy sampled on the fly has
    not, so its summary printed ``FLOPs 0`` per module and ``Total FLOPs: 0``; a measured count is kept.
    """

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [(name, values) for name, values in summary_data if name != "FLOPs" or total_flops]
        header = [name for name, _ in columns]
        rows = [[values[i] for _, values in columns] for i in range(len(columns[0][1]))]
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
        lines = [" | ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in [header, *rows]]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        frozen = total_parameters - trainable_parameters
        def count(n: float) -> str:
            return get_human_readable_count(int(n)).strip()

        lines.append(
            f"Parameters: {count(trainable_parameters)} trainable, {count(frozen)} frozen, "
            f"{count(total_parameters)} total ({model_size:,.1f} MB)"
        )
        if total_flops:
            lines.append(f"FLOPs per example: {count(total_flops)}")
        rank_zero_info("\n" + "\n".join(lines))


def _frozen(module: Any) -> bool:
    """No trainable parameter (and at least one parameter) and every submodule in eval mode."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params) and not any(m.training for m in module.modules())


class FrozenModulesInEvalMode(Callback):
    """Keeps Lightning's "Found N module(s) in eval mode" warning for modules that train.

    Lightning warns at the start of training when any module is in eval mode. A frozen submodule
    (no trainable parameter, entirely in eval mode, like GRPOModule's reference model) is in eval mode
    on purpose; when every module in eval mode lies in one, the warning for exactly that count is
    dropped for that one check. Any other module in eval mode (say the policy, or one dropout layer of
    it) keeps the warning.
    """

    def __init__(self) -> None:
        self._catch: warnings.catch_warnings | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        in_eval = [name for name, module in pl_module.named_modules() if not module.training]
        if not in_eval:
            return
        frozen = [name for name, child in pl_module.named_children() if _frozen(child)]
        if all(any(n == f or n.startswith(f + ".") for f in frozen) for n in in_eval):
            self._catch = warnings.catch_warnings()
            self._catch.__enter__()
            message = re.escape(f"Found {len(in_eval)} module(s) in eval mode at the start of training")
            warnings.filterwarnings("ignore", message=message, category=PossibleUserWarning)

    def _release(self) -> None:
        if self._catch is not None:
            self._catch.__exit__(None, None, None)
            self._catch = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._release()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._release()


# ---- what the CLI adds ---------------------------------------------------------------------------
def default_callbacks(configured: list[Callback], trainer_args: Any) -> list[Callback]:
    """The callbacks above that a run configured with ``configured`` and these Trainer arguments lacks."""

    def has(kind: type) -> bool:
        return any(isinstance(c, kind) for c in configured)

    extra: list[Callback] = [FrozenModulesInEvalMode()]
    if trainer_args.get("enable_progress_bar") is not False and not has(ProgressBar):
        extra.append(step_progress_bar())
    if trainer_args.get("enable_model_summary") is not False and not has(ModelSummary):
        extra.append(ParameterSummary())
    if trainer_args.get("enable_checkpointing") is not False:
        if not has(ModelCheckpoint):
            extra.append(PeriodicCheckpoint())
        if not has(InterruptCheckpoint):
            extra.append(InterruptCheckpoint())
    return extra
