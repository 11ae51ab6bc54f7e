"""InterruptCheckpoint: Ctrl-C or an exception mid-run saves the last finished step, which resumes exactly.

The reference is an uninterrupted run with a checkpoint at every step of interest. An interrupted
run must leave ``interrupted-step=K.ckpt`` equal to the uninterrupted run's step-K checkpoint in
everything an exact resume reads (weights, AdamW, schedule, loop progress, the data module's
position, every RNG state), and resuming from it must log the same values and end with the same
weights, bitwise (CPU, same thread count; see test_resume_and_validation.py).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.builders import make_data, make_module
from lightning_grpo.callbacks import InterruptCheckpoint
from lightning_grpo.module import GRPOModule
from lightning_grpo.objectives import GRPO
from lightning_grpo.rewards import ExactInteger, RewardFunction
from lightning_grpo.demo.arithmetic import Arithmetic

LOGGED = ("train/loss", "reward/total", "train/grad_norm", "train/entropy", "train/kl")
RESUME_KEYS = ("state_dict", "optimizer_states", "lr_schedulers", "loops", "RolloutDataModule", "rng_states",
               "skipped_updates", "global_step", "epoch")


class DigitShare(RewardFunction):
    """Share of digits in the completion; raises ``error`` at call number ``fail_at`` (from inside sampling)."""

    def __init__(self, fail_at: int = 0, error: BaseException | None = None) -> None:
        super().__init__(name="digits")
        self.calls = 0
        self.fail_at = fail_at
        self.error = error

    def score(self, batch):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        return super().score(batch)

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
        return sum(c.isdigit() for c in completion) / max(len(completion), 1)


class StepLog(Callback):
    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.rows[trainer.global_step] = {key: float(trainer.callback_metrics[key]) for key in LOGGED}


class RaiseAt(Callback):
    """Raise ``error`` in a hook when the run is at ``step`` optimizer steps."""

    def __init__(self, hook: str, step: int, error: BaseException) -> None:
        self.hook, self.step, self.error = hook, step, error

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        if self.hook == "on_train_batch_start" and trainer.global_step == self.step:
            raise self.error

    def on_before_optimizer_step(self, trainer: Trainer, *args: Any) -> None:
        if self.hook == "on_before_optimizer_step" and trainer.global_step == self.step:
            raise self.error


class CtrlCAt(Callback):
    """Send this process ``times`` SIGINTs just before the optimizer step that follows step ``step``."""

    def __init__(self, step: int, times: int) -> None:
        self.step, self.times, self.sent = step, times, False

    def on_before_optimizer_step(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(autouse=True)
def restore_sigint():  # type: ignore[no-untyped-def]
    """Lightning ignores SIGINT after a KeyboardInterrupt (while it shuts down); put the default back."""
    sigterm = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, sigterm)


def _fit(model_dir: Path, root: Path, max_steps: int, callbacks: list[Callback], reward: RewardFunction | None = None,
         updates: int = 1, every: int = 1, ckpt_path: str | None = None) -> tuple[GRPOModule, StepLog]:
    seed_everything(0, verbose=False)  # every run starts from the same global RNG states
    log = StepLog()
    checkpoint = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=every, save_top_k=-1, filename="{step}")
    trainer = Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[log, checkpoint, *callbacks], default_root_dir=root, num_sanity_val_steps=0, limit_val_batches=0,
    )
    module = make_module(str(model_dir), objective=GRPO(beta=0.04), learning_rate=1e-3, warmup_steps=2,
                        lr_schedule="cosine", updates_per_rollout=updates, log_completions_every_n_steps=0)
    data = make_data(Arithmetic(num_train=12), tokenizer=str(model_dir), prompts_per_step=2, group_size=4,
                             max_new_tokens=4, seed=3, rewards=[reward or DigitShare()])
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, log


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=False)


def _assert_same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, sorted(map(str, a)), sorted(map(str, b)))
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _assert_same_resume_state(interrupted: dict[str, Any], periodic: dict[str, Any]) -> None:
    for key in RESUME_KEYS:
        _assert_same(interrupted[key], periodic[key], key)


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GRPOModule, StepLog]:
    root = tmp_path_factory.mktemp("uninterrupted")
    module, log = _fit(tiny_model_dir, root, max_steps=6, callbacks=[], every=1)
    return root, module, log


@pytest.mark.slow
@pytest.mark.parametrize(
    "where, error, raised",
    [
        ("sampling", KeyboardInterrupt(), SystemExit),  # Ctrl-C while the 4th rollout is scored
        ("batch_start", RuntimeError("boom"), RuntimeError),  # an exception after the 4th rollout was sampled
    ],
)
def test_interrupt_saves_the_last_finished_step_and_resumes_exactly(
    where: str, error: BaseException, raised: type, uninterrupted, tiny_model_dir: Path, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    base_root, base_module, base_log = uninterrupted
    reward = DigitShare(fail_at=4, error=error) if where == "sampling" else DigitShare()
    extra = [RaiseAt("on_train_batch_start", 3, error)] if where == "batch_start" else []
    with pytest.raises(raised):
        # Periodic checkpoints every 2 steps: only step 2's exists when step 4 is interrupted.
        _fit(tiny_model_dir, tmp_path / "run", max_steps=6, callbacks=[InterruptCheckpoint(), *extra], reward=reward,
             every=2)
    saved = tmp_path / "run" / "ckpt" / "interrupted-step=3.ckpt"
    assert sorted(p.name for p in saved.parent.iterdir()) == ["interrupted-step=3.ckpt", "step=2.ckpt"]
    # The data module had already counted the 4th rollout's prompts and samples: the checkpoint must not.
    state = _load(saved)
    assert state["RolloutDataModule"] == {"rollouts_sampled": 3, "batches_consumed": 3, "extra_batches_consumed": 0}
    _assert_same_resume_state(state, _load(base_root / "ckpt" / "step=3.ckpt"))

    resumed, log = _fit(tiny_model_dir, tmp_path / "resumed", max_steps=6, callbacks=[InterruptCheckpoint()],
                        ckpt_path=str(saved))
    assert sorted(log.rows) == [4, 5, 6]
    for step in (4, 5, 6):
        assert log.rows[step] == base_log.rows[step], step
    for (name, a), (_, b) in zip(base_module.policy.state_dict().items(), resumed.policy.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.fixture(scope="module")
def uninterrupted_two_updates(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted_u2")
    _fit(tiny_model_dir, root, max_steps=6, callbacks=[], updates=2, every=2)
    return root


@pytest.mark.slow
def test_ctrl_c_during_the_updates_finishes_the_rollout_then_saves(
    uninterrupted_two_updates: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Two updates per rollout: Ctrl-C between the 2nd rollout's two optimizer steps is held until
    both are done, then the state after step 4 is saved (equal to the periodic step-4 checkpoint)."""
    with pytest.raises(SystemExit):
        _fit(tiny_model_dir, tmp_path / "run", max_steps=6, callbacks=[InterruptCheckpoint(), CtrlCAt(step=3, times=1)],
             updates=2, every=100)
    saved = tmp_path / "run" / "ckpt" / "interrupted-step=4.ckpt"
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
    _assert_same_resume_state(_load(saved), _load(uninterrupted_two_updates / "ckpt" / "step=4.ckpt"))


@pytest.mark.slow
@pytest.mark.parametrize("cause", ["second Ctrl-C", "exception"])
def test_stopped_between_two_optimizer_steps_saves_nothing_and_says_why(cause: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Stopped between the 2nd rollout's two optimizer steps (step 3 done, step 4 not), the weights
    belong to no step boundary: no interrupt checkpoint, and a warning says why."""
    if cause == "exception":
        callbacks, raised = [RaiseAt("on_before_optimizer_step", 3, RuntimeError("boom"))], RuntimeError
    else:
        callbacks, raised = [CtrlCAt(step=3, times=2)], SystemExit
    with warnings.catch_warnings(record=True) as caught:  # (pytest.warns does not look when SystemExit passes)
        warnings.simplefilter("always")
        with pytest.raises(raised):
            _fit(tiny_model_dir, tmp_path / "run", max_steps=6, callbacks=[InterruptCheckpoint(), *callbacks],
                 updates=2, every=100)
    assert any("the weights are between two steps" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert not (tmp_path / "run" / "ckpt").exists() or not list((tmp_path / "run" / "ckpt").iterdir())


# ---- SIGTERM, and a second signal during the save -------------------------------------------------
class SignalAt(DigitShare):
    """Sends this process ``signum`` from inside its ``fail_at``-th scoring call (sampling is under way)."""

    def __init__(self, fail_at: int, signum: int) -> None:
        super().__init__(fail_at=fail_at)
        self.signum = signum

    def score(self, batch):  # type: ignore[no-untyped-def]
        _count_call_and_signal_at(self, self.fail_at, self.signum)
        return RewardFunction.score(self, batch)


def _count_call_and_signal_at(reward: Any, at: int, signum: int) -> None:
    """One more scoring call of ``reward``; the ``at``-th sends this process ``signum`` and waits for it to act."""
    reward.calls += 1
    if reward.calls == at:
        os.kill(os.getpid(), signum)
        time.sleep(2)  # the main thread acts on the signal meanwhile


@pytest.mark.slow
def test_sigterm_in_a_rollout_saves_at_once_with_one_line_and_resumes_exactly(
    uninterrupted, tiny_model_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    """SIGTERM (a scheduler's stop) acts like Ctrl-C: at once, not at the end of the rollout."""
    base_root, _, _ = uninterrupted
    with pytest.raises(SystemExit):
        _fit(tiny_model_dir, tmp_path / "run", max_steps=6, callbacks=[InterruptCheckpoint()],
             reward=SignalAt(4, signal.SIGTERM), every=2)
    saved = tmp_path / "run" / "ckpt" / "interrupted-step=3.ckpt"
    _assert_same_resume_state(_load(saved), _load(base_root / "ckpt" / "step=3.ckpt"))
    err = capfd.readouterr().err
    saying = [line for line in err.splitlines() if line.startswith("SIGTERM: saving")]
    assert saying == [f"SIGTERM: saving the state after step 3 to {saved} (signal again to abort)"], err
    assert "Traceback" not in err


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from fault_drill import SlowInterruptSave  # noqa: E402  (a save that takes 30 s unless interrupted)


class SecondSignalDuringSave(SlowInterruptSave):
    """The interrupt checkpoint's save takes 30 s; ``signum`` arrives 0.5 s into it."""

    def __init__(self, signum: int) -> None:
        super().__init__(seconds=30.0)
        self.signum = signum

    def on_save_checkpoint(self, trainer: Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if "slow" in checkpoint:
            threading.Timer(0.5, os.kill, (os.getpid(), self.signum)).start()


@pytest.mark.slow
@pytest.mark.parametrize("first, second", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)])
def test_a_second_signal_during_the_save_abandons_it_in_one_line_leaving_the_previous_checkpoint(
    first: int, second: int, tiny_model_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _fit(tiny_model_dir, tmp_path / "run", max_steps=6, callbacks=[InterruptCheckpoint(), SecondSignalDuringSave(second)],
             reward=SignalAt(4, first), every=2)
    folder = tmp_path / "run" / "ckpt"
    # The 30 s save was cut short: no interrupt checkpoint, no partial or temporary file.
    assert sorted(p.name for p in folder.iterdir()) == ["step=2.ckpt"]
    assert _load(folder / "step=2.ckpt")["global_step"] == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    abandoned = [line for line in err.splitlines() if "during the save" in line]
    assert abandoned == [
        f"Ctrl-C during the save: abandoned {folder / 'interrupted-step=3.ckpt'} (no partial file is left); "
        f"the newest complete checkpoint is {folder / 'step=2.ckpt'} (intact)"
    ], err


# ---- SIGTERM during `validate` ------------------------------------------------------------------------
class SignalingExactInteger(ExactInteger):
    """The held-out judge; sends this process SIGTERM from inside its ``at``-th scoring call."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.calls = 0
        self.finished = 0  # calls that returned
        self.at = at

    def score(self, batch):  # type: ignore[no-untyped-def]
        _count_call_and_signal_at(self, self.at, signal.SIGTERM)
        scores = super().score(batch)
        self.finished += 1
        return scores


@pytest.mark.slow
def test_sigterm_stops_validate_at_once(tiny_model_dir: Path, tmp_path: Path, restore_sigint) -> None:  # type: ignore[no-untyped-def]
    # Lightning's own SIGTERM handler only notes the signal and stops `validate` at the next batch boundary,
    # after that batch's generation (a 30-minute batch of 256-token samples here went on until SIGKILL). It
    # stops at the signal now, as Ctrl-C does: the batch being judged is abandoned.
    judge = SignalingExactInteger(at=2)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[InterruptCheckpoint()], default_root_dir=tmp_path)
    module = make_module(str(tiny_model_dir), log_completions_every_n_steps=0)
    data = make_data(Arithmetic(num_train=12, num_validation=40), tokenizer=str(tiny_model_dir), prompts_per_step=2,
                     group_size=2, max_new_tokens=4, rewards=[judge], val_batch_size=4, val_num_samples=1)
    with pytest.raises(SystemExit):
        trainer.validate(module, data)
    assert (judge.calls, judge.finished) == (2, 1)  # ten held-out batches: the second interrupted, no third
