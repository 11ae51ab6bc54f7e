"""The module's update loop on a hand-built rollout: what each optimizer step's objective receives.

A Trainer runs ``GRPOModule.training_step`` on one fixed :class:`Rollout` (no sampling), with an
objective that records its inputs. The checks are the loop's contract (docs/algorithms.md §1, §8):
every mini-batch's ratio is taken against the policy that *sampled* the rollout (logp_old computed
once, before the first update), mini-batches are the consecutive row blocks with their own
normalisers, advantages are the group z-scores of the rewards, masks drop truncated/invalid rows,
and the adaptive entropy coefficient is stepped once per optimizer step with that step's entropy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from tests.builders import make_module
from lightning_grpo.logprobs import completion_logprobs
from lightning_grpo.models import load_causal_lm, load_tokenizer
from lightning_grpo.module import GRPOModule, minibatch_backward
from lightning_grpo.objectives import GRPO, EntropyBonus, Normalizers, ObjectiveInputs
from lightning_grpo.rollout import Rollout

G = 4
LENGTHS = [5, 3, 0, 4, 2, 5, 1, 4]  # row 2 is an empty completion
REWARDS = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0]  # group 0: z = ±0.5·√3; group 1: [−.5, −.5, −.5, 1.5]


def make_rollout(model_dir: Path, truncated: list[bool] | None = None, valid: list[bool] | None = None) -> Rollout:
    tokenizer = load_tokenizer(str(model_dir))
    prompts = tokenizer(["12+7=", "3+4="], padding=True, return_tensors="pt", add_special_tokens=False)
    gen = torch.Generator().manual_seed(0)
    tc = max(LENGTHS)
    completion = torch.randint(4, 40, (len(LENGTHS), tc), generator=gen)
    cmask = (torch.arange(tc).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)).long()
    completion = torch.where(cmask.bool(), completion, torch.full_like(completion, tokenizer.pad_token_id))
    n = len(LENGTHS)
    return Rollout(
        input_ids=torch.cat([prompts["input_ids"].repeat_interleave(G, 0), completion], 1),
        attention_mask=torch.cat([prompts["attention_mask"].repeat_interleave(G, 0), cmask], 1),
        completion_mask=cmask,
        truncated=torch.tensor(truncated or [False] * n),
        rewards=torch.tensor(REWARDS),
        reward_components={},
        group_ids=torch.arange(n) // G,
        group_size=G,
        prompt_length=prompts["input_ids"].shape[1],
        temperature=0.8,
        max_new_tokens=6,
        valid=torch.tensor(valid) if valid is not None else None,
    )


class Recording(GRPO):
    """GRPO that keeps a detached copy of every ObjectiveInputs it sees, and the entropy steps."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seen: list[dict] = []
        self.entropy_steps: list[float] = []

    def __call__(self, inputs: ObjectiveInputs):
        self.seen.append({
            "logp": inputs.logp.detach().clone(), "old_logp": inputs.old_logp.detach().clone(),
            "advantages": inputs.advantages.clone(), "mask": inputs.mask.clone(),
            "ids": inputs.completion_ids.clone(), "normalizers": inputs.normalizers,
            "entropy": inputs.entropy.detach().clone(),
        })
        return super().__call__(inputs)

    def on_optimizer_step(self, entropy: float) -> None:
        self.entropy_steps.append(entropy)
        super().on_optimizer_step(entropy)


class StepProbe(Callback):
    """At every optimizer step (before it is applied): the learning rate, the parameters and their gradients."""

    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_train_start(self, trainer: Trainer, pl_module: GRPOModule) -> None:
        def record(optimizer, args, kwargs) -> None:
            named = list(pl_module.policy.named_parameters())
            self.steps.append({
                "lr": optimizer.param_groups[0]["lr"],
                "params": {n: p.detach().clone() for n, p in named},
                "grads": {n: p.grad.clone() for n, p in named if p.grad is not None},
            })

        trainer.optimizers[0].register_step_pre_hook(record)


def fit(model_dir: Path, rollout: Rollout, objective: GRPO, steps: int, callbacks: list | None = None,
        **module_kwargs) -> tuple[GRPOModule, Trainer]:
    module_kwargs = {"learning_rate": 1e-2, **module_kwargs}
    module = make_module(str(model_dir), objective=objective, log_completions_every_n_steps=0, **module_kwargs)
    trainer = Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, callbacks=callbacks,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader([rollout], batch_size=None, collate_fn=lambda r: r))
    return module, trainer


def sampling_policy_logprobs(model_dir: Path, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    model = load_causal_lm(str(model_dir)).train()
    with torch.no_grad():
        return completion_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.prompt_length,
                                   temperature=rollout.temperature)


def expected_advantages() -> torch.Tensor:
    z0 = 0.5 / (1 / 3**0.5 + 1e-4)
    return torch.tensor([z0, -z0, -z0, z0, -0.5, -0.5, -0.5, 1.5]) / torch.tensor([1.0] * 4 + [1.0 + 1e-4] * 4)


@pytest.mark.parametrize("updates, epochs", [(4, 1), (2, 2), (1, 2)])
def test_every_minibatch_ratio_is_against_the_sampling_policy(tiny_model_dir, updates, epochs):
    rollout = make_rollout(tiny_model_dir)
    initial, initial_entropy = sampling_policy_logprobs(tiny_model_dir, rollout)
    mask = rollout.completion_mask.float()
    objective = Recording(beta=0.0, entropy_bonus=EntropyBonus(coef=0.01, adaptive=True, target=10.0))
    module, trainer = fit(tiny_model_dir, rollout, objective, steps=updates * epochs,
                          updates_per_rollout=updates, epochs=epochs)
    assert trainer.global_step == updates * epochs and len(objective.seen) == updates * epochs
    size = len(LENGTHS) // updates
    moved = []
    for step, seen in enumerate(objective.seen):
        rows = slice((step % updates) * size, (step % updates + 1) * size)
        # the mini-batch is the next block of rows, with its own normalisers
        assert torch.equal(seen["ids"], rollout.completion_ids[rows])
        torch.testing.assert_close(seen["mask"], mask[rows])
        assert seen["normalizers"] == Normalizers(
            num_sequences=float((mask[rows].sum(1) > 0).sum()), num_tokens=float(mask[rows].sum()), max_length=6.0
        )
        torch.testing.assert_close(seen["advantages"], expected_advantages()[rows])
        # logp_old is the sampling policy's, for every mini-batch and epoch
        torch.testing.assert_close(seen["old_logp"] * mask[rows], initial[rows] * mask[rows], atol=1e-5, rtol=0)
        moved.append(float(((seen["logp"] - initial[rows]).abs() * mask[rows]).max()))
    # the first update is on-policy; every later one sees a policy that has moved, so ρ ≠ 1
    assert moved[0] < 1e-5
    assert min(moved[1:]) > 1e-3
    assert float(trainer.callback_metrics["train/logp_old_mismatch_max"]) < 1e-5
    # the adaptive entropy bonus is stepped once per optimizer step, with the mini-batch's mean entropy
    assert len(objective.entropy_steps) == updates * epochs
    first = (initial_entropy[:size] * mask[:size]).sum() / mask[:size].sum()
    assert objective.entropy_steps[0] == pytest.approx(float(first), abs=1e-5)
    assert objective.state_dict()["entropy_coef"] == pytest.approx(0.01 + 0.005 * updates * epochs)
    assert float(trainer.callback_metrics["train/entropy_coef"]) > 0


def test_each_step_applies_its_own_minibatch_gradient_at_the_scheduled_lr(tiny_model_dir):
    """Step k's gradient is the gradient of mini-batch k's loss at the parameters step k starts from
    (nothing left over from step k − 1), with logp_old from the sampling policy; the learning rate
    follows the warm-up (factor (k + 1) / (warmup + 1), then 1)."""
    rollout = make_rollout(tiny_model_dir)
    initial, _ = sampling_policy_logprobs(tiny_model_dir, rollout)
    probe = StepProbe()
    objective = Recording(beta=0.0)
    fit(tiny_model_dir, rollout, objective, steps=4, callbacks=[probe], updates_per_rollout=4, max_grad_norm=None,
        warmup_steps=2, learning_rate=1e-2)
    assert [step["lr"] for step in probe.steps] == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2, 1e-2])
    mask = rollout.completion_mask.float()
    model = load_causal_lm(str(tiny_model_dir)).train()
    for k, (step, seen) in enumerate(zip(probe.steps, objective.seen)):
        model.load_state_dict(step["params"], strict=False)  # lm_head is tied to the embeddings
        model.zero_grad(set_to_none=True)
        rows = torch.arange(2 * k, 2 * k + 2)
        minibatch_backward(model, GRPO(beta=0.0), rollout, [rows], seen["normalizers"], mask, expected_advantages(),
                           initial, None, None, backward=lambda loss: loss.backward())
        for name, param in model.named_parameters():
            torch.testing.assert_close(step["grads"][name], param.grad, atol=1e-6, rtol=1e-4, msg=f"step {k}: {name}")
    # the parameters moved between steps
    assert any(not torch.equal(probe.steps[0]["params"][n], probe.steps[1]["params"][n]) for n in probe.steps[0]["params"])


def test_gradient_norm_is_clipped_before_each_step(tiny_model_dir):
    rollout = make_rollout(tiny_model_dir)
    probe = StepProbe()
    module, trainer = fit(tiny_model_dir, rollout, Recording(beta=0.0), steps=2, callbacks=[probe],
                          updates_per_rollout=2, max_grad_norm=1e-3)
    for step in probe.steps:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in step["grads"].values()]))
        assert norm.item() == pytest.approx(1e-3, rel=1e-4)
    assert float(trainer.callback_metrics["train/grad_norm"]) > 1e-2  # logged before clipping


def test_one_update_per_rollout_is_on_policy(tiny_model_dir):
    rollout = make_rollout(tiny_model_dir)
    initial, _ = sampling_policy_logprobs(tiny_model_dir, rollout)
    objective = Recording(beta=0.0)
    fit(tiny_model_dir, rollout, objective, steps=1)
    (seen,) = objective.seen
    assert torch.equal(seen["old_logp"], seen["logp"])  # ρ ≡ 1: logp_old = stopgrad(logp)
    mask = rollout.completion_mask.float()
    torch.testing.assert_close(seen["logp"] * mask, initial * mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(seen["advantages"], expected_advantages())


def test_truncated_and_invalid_rows_carry_no_loss(tiny_model_dir):
    truncated = [False, True, False, False, False, False, False, False]
    valid = [True, True, True, True, True, False, True, True]
    rollout = make_rollout(tiny_model_dir, truncated=truncated, valid=valid)
    objective = Recording(beta=0.0)
    fit(tiny_model_dir, rollout, objective, steps=1, mask_truncated=True)
    (seen,) = objective.seen
    expected = rollout.completion_mask.float()
    expected[1] = 0.0
    expected[5] = 0.0
    torch.testing.assert_close(seen["mask"], expected)
    assert seen["normalizers"].num_sequences == 5.0  # 8 rows − empty − truncated − invalid
    assert seen["normalizers"].num_tokens == float(expected.sum())


def test_objective_state_travels_in_the_checkpoint(tiny_model_dir):
    bonus = EntropyBonus(coef=0.01, adaptive=True, target=1.0)
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0, entropy_bonus=bonus))
    module.objective.on_optimizer_step(0.4)
    module.objective.on_optimizer_step(0.5)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["objective_state"] == {"entropy_coef": pytest.approx(0.02), "last_entropy": 0.5}
    resumed = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0, entropy_bonus=bonus))
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.objective.state_dict() == module.objective.state_dict()
    assert resumed.objective.applied_entropy_coef() == pytest.approx(0.02)
    # a checkpoint from before the entropy bonus existed loads as a fresh start
    fresh = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0, entropy_bonus=bonus))
    fresh.on_load_checkpoint({})
    assert fresh.objective.applied_entropy_coef() == 0.0


def test_entropy_bonus_gradient_reaches_the_policy(tiny_model_dir):
    """minibatch_backward with a bonus: the policy gradient minus c · ∇(token-mean entropy), the
    entropy taken from a direct full softmax of the model's logits."""
    model = load_causal_lm(str(tiny_model_dir)).train()
    rollout = make_rollout(tiny_model_dir)
    mask = rollout.completion_mask.float()
    advantages = expected_advantages()
    norm = Normalizers(num_sequences=float((mask.sum(1) > 0).sum()), num_tokens=float(mask.sum()), max_length=6.0)
    rows = [torch.arange(0, 3), torch.arange(3, 8)]

    def gradient(objective) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        minibatch_backward(model, objective, rollout, rows, norm, mask, advantages, None, None, None,
                           backward=lambda loss: loss.backward())
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    with_bonus = gradient(GRPO(beta=0.0, entropy_bonus=EntropyBonus(coef=0.3)))
    plain = gradient(GRPO(beta=0.0))
    model.zero_grad(set_to_none=True)
    positions = (rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)
    tp = rollout.prompt_length
    logits = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask, position_ids=positions).logits
    log_probs = torch.log_softmax(logits[:, tp - 1 : -1].float() / rollout.temperature, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    ((entropy * mask).sum() / mask.sum()).backward()
    direct = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(with_bonus, plain - 0.3 * direct, atol=1e-5, rtol=1e-4)
    assert (with_bonus - plain).abs().max() > 1e-4
