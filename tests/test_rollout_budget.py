"""``model.update.max_rollouts``: a budget in rollouts, whatever the optimizer steps per rollout; the
progress bar counts rollouts; example completions reach a CSV logger (a tiny run on the tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger

from lightning_grpo.advantages import AGPOAdvantage
from lightning_grpo.demo.arithmetic import Arithmetic
from lightning_grpo.module_settings import UpdateLoop
from lightning_grpo.objectives import GRPO
from lightning_grpo.rewards import RewardFunction
from tests.builders import make_data, make_module


def test_max_rollouts_below_one_is_named() -> None:
    with pytest.raises(ValueError, match=r"model.update.max_rollouts must be >= 1 or None, got 0"):
        UpdateLoop(max_rollouts=0)


def _fit(model_dir: Path, trainer: Trainer, **module_kwargs) -> tuple:  # type: ignore[type-arg]
    module = make_module(str(model_dir), objective=GRPO(beta=0.0), learning_rate=1e-3, **module_kwargs)
    data = make_data(Arithmetic(num_train=32), tokenizer=str(model_dir), prompts_per_step=2, group_size=2, max_new_tokens=3)
    trainer.fit(module, data)
    return module, data


def _trainer(**kwargs) -> Trainer:  # type: ignore[no-untyped-def]
    return Trainer(accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=1, **kwargs)


def test_three_rollouts_of_two_updates_are_six_optimizer_steps(tiny_model_dir: Path) -> None:
    # max_steps=100 as a recipe's YAML would set it: the rollout budget replaces it.
    trainer = _trainer(max_steps=100, logger=False)
    _, data = _fit(tiny_model_dir, trainer, updates_per_rollout=2, max_rollouts=3, log_completions_every_n_steps=0)
    assert data.batches_consumed == 3  # rollouts sampled
    assert trainer.global_step == 6 and trainer.max_steps == 6
    assert trainer.progress_bar_metrics["rollout"] == 3.0


def test_example_completions_reach_a_csv_logger(tiny_model_dir: Path, tmp_path: Path) -> None:
    logger = CSVLogger(str(tmp_path), name="run", version=0)
    _, data = _fit(tiny_model_dir, _trainer(max_steps=4, logger=logger), updates_per_rollout=2,
                   log_completions_every_n_steps=1, num_completions_to_log=2)
    rows = [json.loads(line) for line in (Path(logger.log_dir) / "completions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 2, 4, 4]  # every rollout (2 optimizer steps each), 2 completions each
    assert set(rows[0]) == {"step", "tag", "prompt", "completion", "extracted", "gold", "reward"}
    assert rows[0]["tag"] == "completions" and rows[0]["prompt"] in data.datasets["train"]["prompt"]


class Zero(RewardFunction):
    def __init__(self) -> None:
        super().__init__(name="zero")

    def score(self, batch):  # type: ignore[no-untyped-def]
        return [0.0] * len(batch.completions)


def test_the_budget_counts_rollouts_even_when_they_make_no_optimizer_step(tiny_model_dir: Path) -> None:
    """Every group has one reward, so AGPO's ``drop`` leaves no loss token and no step is made: the run
    still ends after max_rollouts rollouts (limit_train_batches=5 only keeps a broken budget from running on)."""
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0), advantage=AGPOAdvantage(zero_variance="drop"),
                         updates_per_rollout=2, max_rollouts=2, log_completions_every_n_steps=0)
    data = make_data(Arithmetic(num_train=32), tokenizer=str(tiny_model_dir), prompts_per_step=2, group_size=2,
                     max_new_tokens=2, rewards=[Zero()])
    trainer = Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=5, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, data)
    assert data.batches_consumed == 2 and trainer.global_step == 0
