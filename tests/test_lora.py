"""LoRA through peft: only the adapter trains, the reference is the adapter-free network, resume is exact.

On the tiny Qwen3 model (CPU, float32): a GRPO step with β = 0.04 moves the adapter's weights and no
base weight; the optimizer holds the adapter's parameters only; no second model is loaded, and the
reference log-probs (the policy with adapters disabled) equal those of the base checkpoint loaded
on its own. A run of 6 steps and one of 3 resumed to 6 from a checkpoint that holds only the adapter
and its optimizer state agree bitwise. Exports: the adapter alone, or merged into the base weights,
both reproduce the trained policy's logits. The CLI accepts ``class_path: peft.LoraConfig``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM

from tests.builders import make_data, make_module
from lightning_grpo.data import RolloutDataModule
from lightning_grpo.export import ExportHuggingFace
from lightning_grpo.logprobs import completion_logprobs
from lightning_grpo.models import load_causal_lm
from lightning_grpo.module import GRPOModule
from lightning_grpo.objectives import GRPO
from lightning_grpo.peft_support import apply_adapter, merged_state_dict
from lightning_grpo.rewards import RewardFunction
from lightning_grpo.rollout import Rollout
from lightning_grpo.demo.arithmetic import Arithmetic

LOGGED = ("train/loss", "reward/total", "train/grad_norm", "train/entropy", "train/kl")


def lora(dropout: float = 0.0) -> LoraConfig:
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=dropout)


class DigitShare(RewardFunction):
    """Share of digits in the completion: a reward the random tiny model's samples differ in."""

    def __init__(self) -> None:
        super().__init__(name="digits")

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
        return sum(c.isdigit() for c in completion) / max(len(completion), 1)


class Snapshot(Callback):
    """The policy's parameters before the first step, the logged scalars and the last rollout per step."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.rows: dict[int, dict[str, float]] = {}
        self.rollout: Rollout | None = None

    def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.before = {k: v.detach().clone() for k, v in pl_module.policy.named_parameters()}

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.rows[trainer.global_step] = {k: float(trainer.callback_metrics[k]) for k in LOGGED}
        self.rollout = batch


def _fit(model_dir: Path, root: Path, max_steps: int, ckpt_path: str | None = None, dropout: float = 0.1,
         callbacks: list[Callback] | None = None) -> tuple[GRPOModule, Snapshot, Trainer]:
    snapshot = Snapshot()
    checkpoint = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=3, save_top_k=-1, filename="{step}")
    trainer = Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[snapshot, checkpoint, *(callbacks or [])], default_root_dir=root, num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    module = make_module(str(model_dir), objective=GRPO(beta=0.04), learning_rate=5e-2, warmup_steps=1,
                        lr_schedule="cosine", log_completions_every_n_steps=0, peft=lora(dropout))
    data = make_data(Arithmetic(num_train=12), tokenizer=str(model_dir), prompts_per_step=2, group_size=4,
                             max_new_tokens=4, seed=3, rewards=[DigitShare()])
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, snapshot, trainer


@pytest.fixture(scope="module")
def one_step(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[GRPOModule, Snapshot, Trainer]:
    export = ExportHuggingFace(str(tmp_path_factory.mktemp("lora_export") / "adapter"))
    merged = ExportHuggingFace(str(tmp_path_factory.mktemp("lora_export") / "merged"), merge_adapter=True)
    return _fit(tiny_model_dir, tmp_path_factory.mktemp("lora_one"), max_steps=2, dropout=0.0,
                callbacks=[export, merged])


@pytest.mark.slow
def test_a_lora_step_changes_only_adapter_parameters(one_step) -> None:  # type: ignore[no-untyped-def]
    module, snapshot, trainer = one_step
    assert isinstance(module.policy, PeftModel) and module.reference is None  # no second model in memory
    after = dict(module.policy.named_parameters())
    adapter = {k for k, p in after.items() if p.requires_grad}
    assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    moved = {k for k in after if not torch.equal(after[k].detach(), snapshot.before[k])}
    assert moved, "the step changed nothing"
    assert moved <= adapter, sorted(moved - adapter)[:5]
    assert any(".lora_B." in k for k in moved)  # B starts at 0: the adapter now changes the output
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(after[k]) for k in adapter}


@pytest.mark.slow
def test_reference_logprobs_are_the_base_models(one_step, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    module, snapshot, _ = one_step
    rollout = snapshot.rollout
    reference = module._frozen_logprobs(None, rollout)  # the policy with adapters disabled
    base = load_causal_lm(str(tiny_model_dir)).train()
    with torch.no_grad():
        expected, _ = completion_logprobs(base, rollout.input_ids, rollout.attention_mask, rollout.prompt_length,
                                          temperature=rollout.temperature, with_entropy=False,
                                          group_size=rollout.group_size)  # the module's own path
        adapted = module._frozen_logprobs(module.policy, rollout)
    assert torch.equal(reference, expected)
    assert (adapted - expected).abs().max() > 1e-4  # the adapter did change the policy


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits  # [B, T, V]


@pytest.mark.slow
def test_exported_adapter_and_merged_model_reproduce_the_policy(one_step, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    module, _, trainer = one_step
    adapter_dir, merged_dir = (cb.dirpath / "final" for cb in trainer.callbacks if isinstance(cb, ExportHuggingFace))
    ids = torch.tensor([[10, 11, 12, 13, 14, 15, 16]])
    trained = _logits(module.policy, ids)
    assert (adapter_dir / "adapter_config.json").exists() and not (adapter_dir / "model.safetensors").exists()
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter_dir)
    assert torch.equal(_logits(reloaded, ids), trained)
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)  # a plain checkpoint
    torch.testing.assert_close(_logits(merged, ids), trained, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir), ids), trained, atol=1e-4)
    module.policy.train()


def test_merging_refuses_what_it_cannot_merge(tiny_model_dir: Path) -> None:
    model = apply_adapter(load_causal_lm(str(tiny_model_dir)), LoraConfig(r=2, target_modules=["q_proj"], use_dora=True))
    with pytest.raises(ValueError, match="only plain LoRA"):
        merged_state_dict(model)
    with pytest.raises(ValueError, match="linear layers are named"):
        apply_adapter(load_causal_lm(str(tiny_model_dir)), LoraConfig(r=2, target_modules=["no_such_proj"]))
    with pytest.raises(TypeError, match="peft.LoraConfig"):
        apply_adapter(load_causal_lm(str(tiny_model_dir)), {"r": 2})


@pytest.mark.slow
def test_resume_after_a_lora_checkpoint_is_bitwise(tiny_model_dir: Path, tmp_path: Path) -> None:
    full, full_log, _ = _fit(tiny_model_dir, tmp_path / "full", max_steps=6)  # lora_dropout 0.1: RNG matters
    ckpt = tmp_path / "full" / "ckpt" / "step=3.ckpt"
    state = torch.load(ckpt, weights_only=False)
    saved = [k for k in state["state_dict"]]
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved), saved[:5]  # the adapter only
    adapter_params = sum(1 for p in full.policy.parameters() if p.requires_grad)
    assert len(saved) == adapter_params == len(state["optimizer_states"][0]["state"])
    resumed, resumed_log, _ = _fit(tiny_model_dir, tmp_path / "resumed", max_steps=6, ckpt_path=str(ckpt))
    assert sorted(resumed_log.rows) == [4, 5, 6]
    for step in (4, 5, 6):
        assert resumed_log.rows[step] == full_log.rows[step], step
    full_state, resumed_state = full.policy.state_dict(), resumed.policy.state_dict()
    assert full_state.keys() == resumed_state.keys()
    for name, value in full_state.items():
        assert torch.equal(value, resumed_state[name]), name
    at_three = {k[len("policy."):]: v for k, v in state["state_dict"].items()}
    assert any(not torch.equal(at_three[k], full_state[k]) for k in at_three)  # it kept learning after step 3
    # The adapter checkpoint cannot silently load into a run without the adapter (or vice versa).
    plain = make_module(str(tiny_model_dir), objective=GRPO(beta=0.04))
    plain.configure_model()
    with pytest.raises(KeyError, match="model.peft"):
        plain.load_state_dict(state["state_dict"], strict=False)


def test_cli_accepts_a_lora_config_by_class_path(tiny_model_dir: Path, tmp_path: Path) -> None:
    from lightning_grpo.cli import GRPOCLI

    cli = GRPOCLI(
        GRPOModule, RolloutDataModule, subclass_mode_model=False, subclass_mode_data=False, run=False,
        args=[
            f"--model.model_name_or_path={tiny_model_dir}", f"--trainer.default_root_dir={tmp_path}",
            "--model.peft.class_path=peft.LoraConfig", "--model.peft.init_args.r=8",
            "--model.peft.init_args.lora_alpha=16", "--model.peft.init_args.target_modules=[q_proj,v_proj]",
            "--model.peft.init_args.lora_dropout=0.05", "--data.rollout.rewards=[lightning_grpo.rewards.ExactInteger]",
        ],
    )
    config = cli.model.peft_config
    assert isinstance(config, LoraConfig)
    assert (config.r, config.lora_alpha, set(config.target_modules), config.lora_dropout) == (
        8, 16, {"q_proj", "v_proj"}, 0.05
    )
