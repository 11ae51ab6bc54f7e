"""GRPOModule through a real Trainer on the tiny model: updates happen, faults are contained."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from tests.builders import make_data, make_module
from lightning_grpo.advantages import AGPOAdvantage
from lightning_grpo.module import GRPOModule
from lightning_grpo.objectives import GRPO, ObjectiveInputs
from lightning_grpo.rewards import RewardFunction
from lightning_grpo.demo.arithmetic import Arithmetic


class NaNOnCall(GRPO):
    """GRPO whose loss is NaN on the chosen call (a stand-in for an overflow)."""

    def __init__(self, bad_call: int) -> None:
        super().__init__(beta=0.0)
        self.bad_call = bad_call
        self.calls = 0

    def __call__(self, inputs: ObjectiveInputs):
        self.calls += 1
        loss, metrics = super().__call__(inputs)
        return (loss * float("nan") if self.calls == self.bad_call else loss), metrics


def _fit(model_dir, objective, max_steps: int, **module_kwargs) -> tuple[GRPOModule, Trainer]:
    module = make_module(str(model_dir), objective=objective, learning_rate=1e-3, log_completions_every_n_steps=0, **module_kwargs)
    data = make_data(Arithmetic(num_train=64), tokenizer=str(model_dir), prompts_per_step=2, group_size=4, max_new_tokens=4)
    trainer = Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    return module, trainer


@pytest.mark.slow
def test_nan_loss_skips_the_update_and_training_continues(tiny_model_dir) -> None:
    module, trainer = _fit(tiny_model_dir, NaNOnCall(bad_call=2), max_steps=3)
    assert module.skipped_updates == 1
    assert trainer.global_step == 3  # three real updates, from four rollouts
    assert module.objective.calls == 4
    assert all(torch.isfinite(p).all() for p in module.policy.parameters())


@pytest.mark.slow
def test_nan_loss_raises_when_configured(tiny_model_dir) -> None:
    with pytest.raises(FloatingPointError, match="non-finite gradient norm"):
        _fit(tiny_model_dir, NaNOnCall(bad_call=1), max_steps=2, on_nonfinite="raise")


@pytest.mark.slow
def test_several_updates_per_rollout_step_the_optimizer_each_time(tiny_model_dir) -> None:
    module, trainer = _fit(tiny_model_dir, GRPO(beta=0.0), max_steps=4, updates_per_rollout=2)
    assert trainer.global_step == 4
    assert module.skipped_updates == 0


class SignalOnce(RewardFunction):
    """Digit share of each completion in the first rollout (a learning signal), then 0 for all."""

    def __init__(self) -> None:
        super().__init__(name="once")
        self.calls = 0

    def score(self, batch):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls > 1:
            return [0.0] * len(batch.completions)
        return [sum(ch.isdigit() for ch in c) / max(len(c), 1) + 0.01 * i for i, c in enumerate(batch.completions)]


class WeightsAfterFirstStep(Callback):
    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if batch_idx == 0:
            self.weights = {k: v.clone() for k, v in pl_module.policy.state_dict().items()}


@pytest.mark.slow
def test_minibatches_without_loss_tokens_make_no_optimizer_step(tiny_model_dir) -> None:
    """AGPO 'drop' removes zero-variance groups; after one real step (AdamW then has momentum), three
    rollouts whose groups are all dropped must leave the weights exactly as they were."""
    probe = WeightsAfterFirstStep()
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0), advantage=AGPOAdvantage(zero_variance="drop"),
                        learning_rate=1e-2, updates_per_rollout=2, log_completions_every_n_steps=0)
    data = make_data(Arithmetic(num_train=8), tokenizer=str(tiny_model_dir), prompts_per_step=2, group_size=4,
                             max_new_tokens=4, rewards=[SignalOnce()])
    # One data epoch (the prompt stream is endless: limit_train_batches ends the epoch).
    trainer = Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=4, logger=False, enable_checkpointing=False, callbacks=[probe],
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, data)
    assert data.batches_consumed == 4
    assert trainer.global_step == 2  # the first rollout's two updates only
    assert float(trainer.callback_metrics["train/empty_minibatches"]) == 2.0
    for name, value in module.policy.state_dict().items():
        assert torch.equal(value, probe.weights[name]), name
