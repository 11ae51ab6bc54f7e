"""Every recipe under configs/recipes/ parses (alone and with each strategy) and trains 2 steps on CPU at the
real vocabulary size. (``tests/test_cli.py`` parses every YAML under configs/ on top of the demo.)

No pretrained weights and no hub are reachable here, so each recipe runs as written except for what
points outside: ``model_name_or_path`` becomes a randomly initialised model of the recipe's
architecture (Qwen2) with the real vocabulary (151,936 rows) and context length but tiny width, saved
with ``save_pretrained`` beside an offline tokenizer with Qwen's chat template
(``lightning_grpo/demo/standin_model.py``); the data become the committed samples of GSM8K and MATH-500; the
accelerator becomes the CPU; and the batch, the completion budget and the validation shrink so that
a run takes seconds; precision becomes float32 (bf16 autocast on this CPU doubled the run's time).
Objective, advantage, learning rate, rewards, system prompt, G, checkpointing (``AtomicCheckpointIO``)
and Hugging Face export stay the recipe's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from lightning_grpo.cli import GRPOCLI, main
from lightning_grpo.data import RolloutDataModule
from lightning_grpo.module import GRPOModule
from lightning_grpo.demo.standin_model import QWEN2_VOCAB_SIZE, QWEN_DEFAULT_SYSTEM, save_qwen2_like

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DATA = ROOT / "tests" / "data"
STRATEGIES = sorted((CONFIGS / "strategies").glob("*.yaml"))
CONTEXT = {  # the GPU recipes' real models' max_position_embeddings
    "gsm8k_qwen2.5_0.5b.yaml": 32_768,
    "math_qwen2.5_math_1.5b.yaml": 4_096,
    "lora_qwen2.5_7b_gsm8k.yaml": 32_768,
}
# The GPU recipes (hub models, bf16); the CPU recipe of the real pretrained model is tested in test_real_model.py.
RECIPES = sorted(CONFIGS / "recipes" / name for name in CONTEXT)


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["lightning-grpo"])  # the CLI gets its arguments from `args` only


def _print_config(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_there_are_recipes_for_gsm8k_and_math() -> None:
    assert all(p.is_file() for p in RECIPES) and len(RECIPES) == 3


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_parses_alone_and_with_each_strategy(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _print_config(["--config", str(recipe)], capsys)
    _assert_contains(config, yaml.safe_load(recipe.read_text()), "")
    assert config["model"]["model_name_or_path"].startswith("Qwen/")  # a hub id, nothing local
    assert config["trainer"]["precision"] == "bf16-mixed" and config["trainer"]["accelerator"] == "gpu"
    assert "boxed" in config["data"]["prompt"]["system_prompt"]
    for strategy in STRATEGIES:
        combined = _print_config(["--config", str(recipe), "--config", str(strategy), "--trainer.devices=8"], capsys)
        assert str(combined["trainer"]["devices"]) == "8"  # devices is typed list | str | int
        assert combined["model"] == config["model"]


def _assert_contains(resolved: object, written: object, where: str) -> None:
    """``written`` (a parsed YAML file) is part of ``resolved`` (the CLI's full config); class paths may
    be written short (``lightning_grpo.rewards.MathReward``) and resolve to their defining module."""
    if isinstance(written, dict):
        assert isinstance(resolved, dict), where
        if "class_path" in written and "class_path" not in resolved:  # a dataclass prints as its fields
            written = written.get("init_args", {})
        if "class_path" in resolved and "class_path" not in written:  # a class written by its init_args only
            resolved = resolved.get("init_args", {})
        for key, value in written.items():
            if key == "class_path":
                assert resolved[key].rsplit(".", 1)[-1] == value.rsplit(".", 1)[-1], where
            else:
                _assert_contains(resolved[key], value, f"{where}.{key}")
    elif isinstance(written, list):
        assert isinstance(resolved, list) and len(resolved) == len(written), where
        for i, (r, w) in enumerate(zip(resolved, written)):
            _assert_contains(r, w, f"{where}[{i}]")
    elif isinstance(written, str) and isinstance(resolved, dict) and "class_path" in resolved:
        assert resolved["class_path"].rsplit(".", 1)[-1] == written.rsplit(".", 1)[-1], where  # `objective: GRPO`
    else:
        assert resolved == written or str(resolved) == str(written), (where, resolved, written)


@pytest.fixture(scope="module")
def qwen_like(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """One random Qwen2 checkpoint per context length the recipes' models have."""
    base = tmp_path_factory.mktemp("qwen_like")
    return {n: save_qwen2_like(base / f"ctx{n}", max_position_embeddings=n) for n in set(CONTEXT.values())}


def _math_lighteval_like(path: Path) -> Path:
    """MATH's original layout (no ``answer`` column; the gold is the solution's last \\boxed{})."""
    rows = [json.loads(line) for line in (DATA / "math500_sample.jsonl").read_text().splitlines()]
    datasets.Dataset.from_list(
        [{"problem": r["problem"], "level": f"Level {r['level']}", "type": r["subject"], "solution": r["solution"]} for r in rows]
    ).to_parquet(str(path))
    return path


def _local_data(recipe: str, tmp_path: Path) -> list[str]:
    if "gsm8k" in recipe:
        train, validation = DATA / "gsm8k_train_sample.jsonl", DATA / "gsm8k_test_sample.jsonl"
    else:
        train, validation = _math_lighteval_like(tmp_path / "math_train.parquet"), DATA / "math500_sample.jsonl"
    return [f"--data.source.init_args.train_path={train}", f"--data.source.init_args.validation_path={validation}"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_trains_two_steps_on_cpu_at_the_real_vocabulary_size(
    recipe: Path, qwen_like: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the recipe's runs/ (logs, checkpoints, export) land here
    written = yaml.safe_load(recipe.read_text())
    model_dir = qwen_like[CONTEXT[recipe.name]]
    args = [
        "--config", str(recipe),
        f"--model.model_name_or_path={model_dir}",
        *_local_data(recipe.name, tmp_path),
        "--trainer.accelerator=cpu",
        "--trainer.precision=32-true",  # bf16 autocast on a CPU without bf16 matrix units doubles the time
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",  # one validation, after the second rollout
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--data.prompts_per_step=2",
        "--data.rollout.sampling.max_new_tokens=8",
        "--data.validation.max_prompts=2",
        "--data.validation.batch_size=2",
        "--data.validation.num_samples=2",
    ]
    start = time.perf_counter()
    cli = GRPOCLI(GRPOModule, RolloutDataModule, subclass_mode_model=False, subclass_mode_data=False, run=False, args=args)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    print(f"{recipe.name}: 2 steps + 1 validation in {seconds:.1f} s")

    trainer, policy, data = cli.trainer, cli.model.policy, cli.datamodule
    assert trainer.global_step == 2 * written["model"]["update"]["updates_per_rollout"]
    assert policy.get_output_embeddings().weight.shape[0] == QWEN2_VOCAB_SIZE
    assert data.group_size == written["data"]["rollout"]["group_size"]
    # the recipe's system prompt replaced the chat template's default system turn
    prompt = data.datasets["train"][0]["prompt"]
    assert prompt.startswith(f"<|im_start|>system\n{written['data']['prompt']['system_prompt']}<|im_end|>\n<|im_start|>user\n")
    assert QWEN_DEFAULT_SYSTEM not in prompt and prompt.endswith("<|im_start|>assistant\n")
    # validation on the test split with pass@k
    metrics = trainer.callback_metrics
    for key in ("val/accuracy", "val/pass@1", "val/pass@2", "val/num_prompts"):
        assert key in metrics, sorted(metrics)
    assert float(metrics["val/num_prompts"]) == 2 and 0.0 <= float(metrics["val/pass@2"]) <= 1.0
    assert torch.isfinite(metrics["train/loss"])
    # checkpoint (ModelCheckpoint through AtomicCheckpointIO) and Hugging Face export
    name = written["trainer"]["logger"]["init_args"]["name"]
    checkpoints = list((tmp_path / "runs" / name).glob("version_*/checkpoints/last.ckpt"))
    assert len(checkpoints) == 1
    assert torch.load(checkpoints[0], map_location="cpu", weights_only=False)["global_step"] == trainer.global_step
    export = tmp_path / written["trainer"]["callbacks"][1]["init_args"]["dirpath"] / "final"
    exported = AutoModelForCausalLM.from_pretrained(export)
    assert exported.config.vocab_size == QWEN2_VOCAB_SIZE
    if not hasattr(policy, "peft_config"):  # adapter / merged LoRA exports are compared in tests/test_lora.py
        for key, value in policy.state_dict().items():
            torch.testing.assert_close(exported.state_dict()[key], value, msg=lambda m: f"{key}: {m}")
    assert AutoTokenizer.from_pretrained(export).chat_template == AutoTokenizer.from_pretrained(model_dir).chat_template
    assert seconds < 60, f"{recipe.name} took {seconds:.0f} s"
