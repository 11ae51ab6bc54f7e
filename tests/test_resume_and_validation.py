"""Exact resume from a step checkpoint, the prompt stream's order, and held-out validation.

Resume: a run of 6 steps and a run of 3 steps resumed from its step-3 checkpoint to step 6 must log
the same rewards and losses at steps 4-6 and end with the same weights. On CPU, with the same thread
count, every kernel is deterministic and the sampler's seed is a function of (seed, rank, rollout
index), so the comparison is bitwise (``torch.equal``, ``==`` on floats): any state the checkpoint
lost (optimizer moments, LR schedule, prompt position, sampler position, RNG) would show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.builders import make_data, make_module
from lightning_grpo.module import GRPOModule
from lightning_grpo.objectives import GRPO
from lightning_grpo.prompt_stream import batch_indices
from lightning_grpo.rewards import RewardFunction
from lightning_grpo.demo.arithmetic import Arithmetic

LOGGED = ("train/loss", "reward/total", "train/grad_norm", "train/entropy", "train/kl")


class DigitShare(RewardFunction):
    """Share of digits in the completion: a reward the random tiny model's samples differ in."""

    def __init__(self) -> None:
        super().__init__(name="digits")

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
        return sum(c.isdigit() for c in completion) / max(len(completion), 1)


class StepLog(Callback):
    """Per optimizer step: the logged scalars and the prompts of the rollout."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        metrics = trainer.callback_metrics
        row = {key: float(metrics[key]) for key in LOGGED}
        row["prompts"] = list(batch.prompts)
        self.rows[trainer.global_step] = row


def _fit(model_dir: Path, root: Path, max_steps: int, ckpt_path: str | None = None, every: int = 3) -> tuple[GRPOModule, StepLog]:
    log = StepLog()
    checkpoint = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=every, save_top_k=-1, filename="{step}")
    trainer = Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[log, checkpoint], default_root_dir=root, num_sanity_val_steps=0, limit_val_batches=0,
    )
    module = make_module(str(model_dir), objective=GRPO(beta=0.04), learning_rate=1e-3, warmup_steps=2,
                        lr_schedule="cosine", log_completions_every_n_steps=0)
    data = make_data(Arithmetic(num_train=12), tokenizer=str(model_dir), prompts_per_step=2, group_size=4,
                             max_new_tokens=4, seed=3, rewards=[DigitShare()])
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, log


@pytest.mark.slow
def test_resumed_run_matches_the_uninterrupted_run_bitwise(tiny_model_dir: Path, tmp_path: Path) -> None:
    full, full_log = _fit(tiny_model_dir, tmp_path / "full", max_steps=6)
    # 12 prompts, 2 per step: the 6 steps span exactly one data epoch, each prompt once.
    prompts = [p for step in range(1, 7) for p in full_log.rows[step]["prompts"]]
    assert len(set(prompts)) == 12
    ckpt = tmp_path / "full" / "ckpt" / "step=3.ckpt"
    assert ckpt.exists()
    state = torch.load(ckpt, weights_only=False)
    assert state["RolloutDataModule"]["batches_consumed"] == 3 and "rng_states" in state
    resumed, resumed_log = _fit(tiny_model_dir, tmp_path / "resumed", max_steps=6, ckpt_path=str(ckpt))
    assert all(full_log.rows[step]["train/grad_norm"] > 0 for step in range(1, 7))  # every step learned
    assert sorted(resumed_log.rows) == [4, 5, 6]
    for step in (4, 5, 6):
        assert resumed_log.rows[step] == full_log.rows[step], step
    for (name, a), (_, b) in zip(full.policy.state_dict().items(), resumed.policy.state_dict().items()):
        assert torch.equal(a, b), name
    # ... and the weights did move after step 3 (the comparison is not between two idle runs)
    at_three = {k[len("policy."):]: v for k, v in state["state_dict"].items() if k.startswith("policy.")}
    assert any(not torch.equal(at_three[k], v) for k, v in full.policy.state_dict().items())


def test_prompt_batches_cover_each_epoch_once_and_do_not_depend_on_the_rank_count() -> None:
    one = [batch_indices(10, k, seed=0, rank=0, world_size=1, per_rank=4) for k in range(2)]
    two = [[i for r in range(2) for i in batch_indices(10, k, seed=0, rank=r, world_size=2, per_rank=2)] for k in range(2)]
    assert one == two  # rank r takes the r-th part of the same global batch
    assert len(set(one[0] + one[1])) == 8  # no prompt twice within a data epoch (2 left over, dropped)
    next_epoch = batch_indices(10, 2, seed=0, rank=0, world_size=1, per_rank=4)
    assert next_epoch != one[0]  # a new permutation
    with pytest.raises(ValueError, match="fewer than one global batch"):
        batch_indices(3, 0, seed=0, rank=0, world_size=2, per_rank=2)


@pytest.mark.slow
def test_validate_reports_greedy_accuracy_pass_at_k_and_maj_at_k(tiny_model_dir: Path) -> None:
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0))
    data = make_data(Arithmetic(num_validation=7), tokenizer=str(tiny_model_dir), max_new_tokens=4,
                             val_batch_size=3, val_num_samples=4)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (results,) = trainer.validate(module, data)
    assert results["val/num_prompts"] == 7  # 3 + 3 + 1, each held-out prompt once
    for key in ("val/accuracy", "val/pass@1", "val/pass@2", "val/pass@4", "val/maj@4", "val/length_mean",
                "val/truncated_frac", "val/greedy_length_mean"):
        assert key in results, sorted(results)
    assert 0 <= results["val/pass@1"] <= results["val/pass@2"] <= results["val/pass@4"] <= 1
    assert 1 <= results["val/length_mean"] <= 4


@pytest.mark.slow
def test_validation_accuracy_counts_right_answers(tiny_model_dir: Path) -> None:
    """A judge that marks everything correct gives accuracy and pass@k 1; one that marks nothing, 0."""
    from lightning_grpo.rewards import ExactInteger

    class Always(ExactInteger):
        def __init__(self, verdict: bool) -> None:
            super().__init__()
            self.verdict = verdict

        def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
            return self.correct_value if self.verdict else self.incorrect_value

        def extract(self, completion: str, truncated: bool = False) -> str | None:
            return "x"

    for verdict in (True, False):
        module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0))
        data = make_data(Arithmetic(num_validation=5), tokenizer=str(tiny_model_dir), max_new_tokens=2,
                                 rewards=[Always(verdict)], val_batch_size=2, val_num_samples=2)
        trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        (results,) = trainer.validate(module, data)
        expected = float(verdict)
        assert results["val/accuracy"] == expected and results["val/pass@2"] == expected
        assert results["val/maj@2"] == expected
