"""What a new user meets in the first hour: a quiet screen, a truthful progress bar, small datasets,
max_steps that holds, validation of a checkpoint at its step, per-step reward error counts.

The CLI test runs ``lightning-grpo`` as a subprocess on the demo config (tiny warm start), as a user
would: fit on a dataset smaller than the validation interval, then resume.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.builders import make_data, make_module
from lightning_grpo.callbacks import RichStepProgressBar, TQDMStepProgressBar
from lightning_grpo.objectives import GRPO
from lightning_grpo.rewards import ExactInteger, RewardFunction
from lightning_grpo.rewards.base import RewardBatch, RewardComposer
from lightning_grpo.demo.arithmetic import Arithmetic

ROOT = Path(__file__).resolve().parents[1]

# Messages the project has handled; none may reach the screen.
HANDLED = (
    "litlogger",  # a tip for another logging product
    "not resumable",  # Lightning's mid-epoch resume warning (the prompt stream resumes exactly)
    "pre-optimization state",  # ModelCheckpoint's manual-optimisation warning and its code sample
    "self.saved_models",
    "module(s) in eval mode",  # the frozen reference model
    "FLOPs",  # never measured (no example input)
    "is deprecated",  # Lightning's own torch.utils._pytree call
    "IterableDataset` has `__len__`",
    "Epoch 0/",  # the old bar: "Epoch 0/-2"
    "must be less than or equal to the number of the training batches",
    "couldn't be hashed properly",  # datasets' fingerprint warning for a map() closing over the data module
    "Map:",  # datasets' progress bar for that map()
)


class DigitShare(RewardFunction):
    def __init__(self) -> None:
        super().__init__(name="digits")

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
        return sum(c.isdigit() for c in completion) / max(len(completion), 1)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightning_grpo.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )


@pytest.mark.slow
def test_cli_fit_and_resume_on_a_small_dataset_show_only_what_matters(tmp_path: Path) -> None:
    """16 training prompts, 8 per step: 2 rollouts per data epoch, validation every 3 rollouts. Fit to
    step 4, then resume to 6: both finish, neither shows a handled message, and the bar counts
    optimizer steps to max_steps."""
    checkpoints = tmp_path / "ckpt"
    args = [
        "--config", str(ROOT / "configs" / "demo.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        f"--model.model_name_or_path={tmp_path / 'warm'}", f"--prepare.output_dir={tmp_path / 'warm'}",
        "--prepare.steps=20", "--prepare.model.hidden_size=64", "--prepare.model.num_layers=2",
        "--data.source.init_args.num_train=16", "--data.validation.max_prompts=8", "--data.validation.num_samples=2",
        "--trainer.val_check_interval=3", f"--trainer.callbacks.init_args.dirpath={checkpoints}",
        "--trainer.callbacks.init_args.every_n_train_steps=2",
    ]
    first = _cli("fit", *args, "--trainer.max_steps=4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _cli("fit", *args, "--trainer.max_steps=6", f"--ckpt_path={checkpoints / 'last.ckpt'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name, run in (("fit", first), ("resumed fit", resumed)):
        screen = run.stdout + run.stderr
        for message in HANDLED:
            assert message not in screen, f"{name} printed {message!r}:\n{screen[-4000:]}"
    assert "validation at step 3:" in first.stdout + first.stderr
    assert "greedy accuracy" in first.stdout + first.stderr  # says which of its accuracies it is
    assert "Optimizer steps" in first.stdout and "4/4" in first.stdout
    assert "validation at step 6:" in resumed.stdout + resumed.stderr
    assert "Optimizer steps" in resumed.stdout and "6/6" in resumed.stdout


class StepProbe(Callback):
    """After the bar's own hook: (optimizer steps, bar position, bar total) at each batch end."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.rows: list[tuple[int, float, float]] = []

    def _position(self) -> tuple[float, float]:
        if isinstance(self.bar, TQDMStepProgressBar):
            return self.bar.train_progress_bar.n, self.bar.train_progress_bar.total
        task = self.bar.progress.tasks[self.bar.train_progress_bar_id]
        return task.completed, task.total

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        self.rows.append((trainer.global_step, *self._position()))


class CountOptimizerSteps(Callback):
    def __init__(self) -> None:
        self.count = 0

    def on_before_optimizer_step(self, *args: Any) -> None:
        self.count += 1


def _fit(model_dir: Path, root: Path, max_steps: int, updates: int, callbacks: list[Callback],
         ckpt_path: str | None = None, progress_bar: bool = False, **data_kwargs: Any) -> Trainer:
    trainer = Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_model_summary=False, callbacks=callbacks,
        default_root_dir=root, num_sanity_val_steps=0, enable_progress_bar=progress_bar,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        limit_val_batches=data_kwargs.pop("limit_val_batches", 0), val_check_interval=data_kwargs.pop("val_check_interval", None),
    )
    module = make_module(str(model_dir), objective=GRPO(beta=0.0), learning_rate=1e-3, updates_per_rollout=updates,
                        log_completions_every_n_steps=0)
    data = make_data(data_kwargs.pop("source", Arithmetic(num_train=12)), tokenizer=str(model_dir),
                             prompts_per_step=2, group_size=4, max_new_tokens=4, rewards=[DigitShare(), ExactInteger()],
                             **data_kwargs)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize("bar_class", [TQDMStepProgressBar, RichStepProgressBar])
def test_progress_bar_counts_optimizer_steps_up_to_max_steps_across_a_resume(bar_class: type, tiny_model_dir: Path,
                                                                           tmp_path: Path) -> None:
    """Two updates per rollout: the bar advances by 2 per rollout and its total is max_steps, also in
    a run resumed from step 4 (Lightning's bar counted batches of a data epoch: 1/6, then 25/5)."""
    bar = bar_class()
    probe = StepProbe(bar)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1, filename="{step}")
    _fit(tiny_model_dir, tmp_path, max_steps=4, updates=2, callbacks=[bar, probe, checkpoint], progress_bar=True)
    assert probe.rows == [(2, 2, 4), (4, 4, 4)]
    bar = bar_class()
    resumed_probe = StepProbe(bar)
    _fit(tiny_model_dir, tmp_path, max_steps=8, updates=2, callbacks=[bar, resumed_probe],
         ckpt_path=str(tmp_path / "ckpt" / "step=4.ckpt"), progress_bar=True)
    assert resumed_probe.rows == [(6, 6, 8), (8, 8, 8)]


@pytest.mark.slow
def test_max_steps_bounds_optimizer_steps_with_several_updates_per_rollout(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Four updates per rollout and max_steps=3: three optimizer steps, not four (DAPO's recipe)."""
    steps = CountOptimizerSteps()
    trainer = _fit(tiny_model_dir, tmp_path, max_steps=3, updates=4, callbacks=[steps])
    assert steps.count == 3 and trainer.global_step == 3


class ValidationSteps(Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_validation_end(self, trainer: Trainer, *args: Any) -> None:
        self.steps.append(trainer.global_step)


@pytest.mark.slow
def test_validation_every_n_rollouts_on_a_dataset_smaller_than_n(tiny_model_dir: Path, tmp_path: Path) -> None:
    """6 prompts, 2 per rollout: 3 rollouts per data epoch; validation every 4 rollouts still works
    (Lightning refused: val_check_interval (4) > the number of training batches (3)), and the prompt
    stream goes on into the next data epoch with a new order."""
    seen = ValidationSteps()
    prompts: list[list[str]] = []

    class Prompts(Callback):
        def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            prompts.append(list(batch.prompts))

    _fit(tiny_model_dir, tmp_path, max_steps=8, updates=1, callbacks=[seen, Prompts()],
         source=Arithmetic(num_train=6, num_validation=4), val_check_interval=4, limit_val_batches=1.0,
         val_batch_size=4, val_num_samples=1)
    assert seen.steps == [4, 8]
    assert len(prompts) == 8
    first_epoch, second_epoch = prompts[0:3], prompts[3:6]
    assert len({p for batch in first_epoch for p in batch}) == 6  # each prompt once per data epoch
    assert sorted(p for b in first_epoch for p in b) == sorted(p for b in second_epoch for p in b)
    assert first_epoch != second_epoch  # a new permutation


@pytest.mark.slow
def test_an_endless_stream_without_max_steps_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_steps"):
        _fit(tiny_model_dir, tmp_path, max_steps=-1, updates=1, callbacks=[])


@pytest.mark.slow
def test_validate_reports_and_logs_the_checkpoint_step(tiny_model_dir: Path, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, filename="{step}")
    _fit(tiny_model_dir, tmp_path, max_steps=2, updates=1, callbacks=[checkpoint])
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0))
    data = make_data(Arithmetic(num_validation=3), tokenizer=str(tiny_model_dir), max_new_tokens=2,
                             val_batch_size=3, val_num_samples=1, rewards=None)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with caplog.at_level("INFO"):
        (results,) = trainer.validate(module, data, ckpt_path=str(tmp_path / "ckpt" / "step=2.ckpt"))
    assert results["step"] == 2  # the logger's x axis: the checkpoint's step, not 0
    assert "validation at step 2:" in caplog.text


class Shaky(RewardFunction):
    """Raises on completions that contain 'x'."""

    def __init__(self) -> None:
        super().__init__(name="shaky")

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
        if "x" in completion:
            raise ValueError("cannot read it")
        return 1.0


def _batch(completions: list[str]) -> RewardBatch:
    n = len(completions)
    return RewardBatch(prompts=["p"] * n, completions=completions, golds=["1"] * n,
                       completion_ids=[f"p/{i}" for i in range(n)], group_ids=[0] * n, lengths=[1] * n,
                       truncated=[False] * n)


def test_reward_errors_are_counted_per_call_and_in_total() -> None:
    composer = RewardComposer([Shaky()], on_error="zero")
    seen = []
    for completions in (["x1", "2", "x3"], ["4", "5"], ["x"]):
        total, _ = composer(_batch(completions))
        seen.append((dict(composer.last_error_counts), dict(composer.error_counts)))
    assert seen == [({"shaky": 2}, {"shaky": 2}), ({"shaky": 0}, {"shaky": 2}), ({"shaky": 1}, {"shaky": 3})]
    assert total == [0.0]
