"""ExportHuggingFace: after a short fit, the export loads with from_pretrained and matches the policy.

The FSDP2 test runs this file as a 2-process gloo job (the ranks shard the tiny model and export it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.builders import make_data, make_module
from lightning_grpo.data import RolloutDataModule
from lightning_grpo.export import ExportHuggingFace, full_state_dict, save_pretrained_atomic
from lightning_grpo.module import GRPOModule
from lightning_grpo.objectives import GRPO
from lightning_grpo.rewards.base import RewardFunction
from lightning_grpo.demo.arithmetic import Arithmetic


class DigitCount(RewardFunction):
    """A reward that varies within a group even for a random model, so the policy really moves."""

    def __init__(self) -> None:
        super().__init__(name="digits")

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict[str, Any]) -> float:
        return float(sum(ch.isdigit() for ch in completion))


@pytest.fixture(scope="module")
def fitted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[GRPOModule, RolloutDataModule, Path]:
    export_dir = tmp_path_factory.mktemp("export") / "policy"
    callback = ExportHuggingFace(str(export_dir), every_n_steps=1)
    trainer = Trainer(
        accelerator="cpu", devices=1, max_steps=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
    )
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0), learning_rate=1e-2, log_completions_every_n_steps=0)
    data = make_data(
        Arithmetic(num_train=32, num_validation=0), tokenizer=str(tiny_model_dir), prompts_per_step=2, group_size=4,
        max_new_tokens=6, rewards=[DigitCount()],
    )
    trainer.fit(module, data)
    assert callback.exported == [export_dir / "step_1", export_dir / "step_2", export_dir / "final"]
    return module, data, export_dir


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits  # [B, T, V]


@pytest.mark.slow
def test_export_loads_and_reproduces_the_trained_policy(fitted, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    module, data, export_dir = fitted
    exported = AutoModelForCausalLM.from_pretrained(export_dir / "final")
    ids = data.tokenizer(["12+34=", "7+8=46"], padding=True, return_tensors="pt", add_special_tokens=False)["input_ids"]
    trained = _logits(module.policy, ids)
    assert torch.equal(_logits(exported, ids), trained)
    # Trained, not the starting point.
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not torch.allclose(_logits(initial, ids), trained)
    # The config names the real architecture and the tokenizer round-trips.
    assert json.loads((export_dir / "final" / "config.json").read_text())["architectures"] == ["Qwen3ForCausalLM"]
    tokenizer = AutoTokenizer.from_pretrained(export_dir / "final")
    assert tokenizer.get_vocab() == data.tokenizer.get_vocab()


@pytest.mark.slow
def test_periodic_exports_differ_step_by_step(fitted) -> None:  # type: ignore[no-untyped-def]
    _, data, export_dir = fitted
    ids = data.tokenizer(["12+34="], return_tensors="pt", add_special_tokens=False)["input_ids"]
    step1 = _logits(AutoModelForCausalLM.from_pretrained(export_dir / "step_1"), ids)
    step2 = _logits(AutoModelForCausalLM.from_pretrained(export_dir / "step_2"), ids)
    final = _logits(AutoModelForCausalLM.from_pretrained(export_dir / "final"), ids)
    assert not torch.allclose(step1, step2) and torch.equal(step2, final)
    # Only the exports themselves are left: no staging or old directories.
    assert sorted(p.name for p in export_dir.iterdir()) == ["final", "step_1", "step_2"]


def test_save_pretrained_atomic_replaces_and_cleans_up(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    target = tmp_path / "out"
    save_pretrained_atomic(model, target)
    (target / "stale.txt").write_text("from an older export")
    save_pretrained_atomic(model, target)
    assert not (target / "stale.txt").exists() and (target / "config.json").exists()

    class Boom(Exception):
        pass

    def fail(*args: Any, **kwargs: Any) -> None:
        raise Boom

    model.save_pretrained = fail  # a crash mid-export keeps the previous export
    with pytest.raises(Boom):
        save_pretrained_atomic(model, target)
    assert (target / "config.json").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_rejects_bad_interval() -> None:
    with pytest.raises(ValueError):
        ExportHuggingFace("x", every_n_steps=0)


# ---- FSDP2: a sharded policy is gathered before the write ----------------------------------------
def _fsdp_rank_main(rank: int, world: int, model_dir: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from lightning_grpo.export import full_state_dict
    from lightning_grpo.sharding import fully_shard_causal_lm

    dist.init_process_group("gloo", init_method=f"file://{out_dir}/init", rank=rank, world_size=world)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():  # move the weights away from the saved ones, differently per tensor
        for i, p in enumerate(model.parameters()):
            p.add_(0.01 * (i + 1))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    expected = _logits(model, ids)
    fully_shard_causal_lm(model, init_device_mesh("cpu", (world,)))
    state = full_state_dict(model)  # a collective: every rank
    assert state is not None and not any(hasattr(v, "full_tensor") for v in state.values())
    if rank == 0:
        save_pretrained_atomic(model, Path(out_dir) / "export", state_dict=state)
    dist.barrier()
    if rank == 0:
        exported = AutoModelForCausalLM.from_pretrained(Path(out_dir) / "export")
        config = json.loads((Path(out_dir) / "export" / "config.json").read_text())
        result = {"equal": torch.equal(_logits(exported, ids), expected), "architectures": config["architectures"]}
        (Path(out_dir) / "result.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def test_fsdp2_sharded_policy_exports_full_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, __file__, str(tiny_model_dir), str(tmp_path)], capture_output=True, text=True, timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "result.json").read_text()) == {"equal": True, "architectures": ["Qwen3ForCausalLM"]}
    assert full_state_dict(torch.nn.Linear(2, 2)) is None  # unsharded: save_pretrained reads the model


if __name__ == "__main__":
    import torch.multiprocessing as mp

    mp.start_processes(_fsdp_rank_main, args=(2, sys.argv[1], sys.argv[2]), nprocs=2, start_method="fork")
