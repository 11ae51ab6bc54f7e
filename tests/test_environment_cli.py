"""Configuration of the rollout: one flag turns on the tool environment; old flat option names name the new ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_grpo.cli import GRPOCLI, main
from lightning_grpo.data import RolloutDataModule
from lightning_grpo.environments import Calculator, PythonSandbox, SingleTurn, ToolEnvironment
from lightning_grpo.module import GRPOModule
from lightning_grpo.renamed_options import check_renamed

ROOT = Path(__file__).resolve().parents[1]


def _cli(tiny_model_dir: Path, tmp_path: Path, *extra: str) -> GRPOCLI:
    args = [
        f"--model.model_name_or_path={tiny_model_dir}", "--model.logging.log_completions_every_n_steps=0",
        "--data.source=lightning_grpo.demo.arithmetic.Arithmetic", "--data.prompts_per_step=2",
        "--data.rollout.rewards=[lightning_grpo.rewards.ExactInteger]", "--data.rollout.group_size=2",
        "--data.rollout.sampling.max_new_tokens=8", "--trainer.max_steps=2", "--trainer.logger=false",
        "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}", *extra,
    ]
    return GRPOCLI(GRPOModule, RolloutDataModule, subclass_mode_model=False, subclass_mode_data=False, run=False,
                   auto_configure_optimizers=False, args=args)


@pytest.mark.slow
def test_one_flag_turns_a_single_turn_run_into_the_tool_environment(tiny_model_dir: Path, tmp_path: Path) -> None:
    plain = _cli(tiny_model_dir, tmp_path)
    assert isinstance(plain.datamodule.rollout.environment, SingleTurn)
    cli = _cli(tiny_model_dir, tmp_path, "--data.rollout.environment=ToolEnvironment")
    environment = cli.datamodule.rollout.environment
    assert isinstance(environment, ToolEnvironment) and environment.max_turns == 4
    assert [type(t) for t in environment.tools.values()] == [Calculator, PythonSandbox]
    assert cli.datamodule.rollout.max_episode_tokens == 8 * 4  # max_new_tokens x max_turns
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 2 and metrics["episode/count"] == 4  # the episodes' counters are logged
    assert "episode/tool_calls" in metrics and "time/environment_s" in metrics


@pytest.mark.slow
def test_the_tool_environment_s_options_are_set_from_the_command_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    cli = _cli(tiny_model_dir, tmp_path, "--data.rollout.environment=ToolEnvironment",
               "--data.rollout.environment.max_turns=2", "--data.rollout.environment.tools=[Calculator]",
               "--data.rollout.max_episode_tokens=20")
    environment = cli.datamodule.rollout.environment
    assert environment.max_turns == 2 and list(environment.tools) == ["calculator"]
    assert cli.datamodule.rollout.max_episode_tokens == 20


@pytest.mark.parametrize(("old", "new"), [("data.temperature", "data.rollout.sampling.temperature"),
                                          ("data.val_num_samples", "data.validation.num_samples"),
                                          ("data.sampler_backend", "data.rollout.sampler")])
def test_an_old_option_on_the_command_line_names_the_new_one(old: str, new: str) -> None:
    with pytest.raises(SystemExit, match=rf"{old} \(in the command line\) is now {new}"):
        main(["fit", "--config", str(ROOT / "configs" / "demo.yaml"), f"--{old}=1"])


def test_an_old_option_in_a_config_file_names_the_file_and_the_new_one(tmp_path: Path) -> None:
    config = tmp_path / "old.yaml"
    config.write_text(yaml.safe_dump({"data": {"group_size": 4, "rewards": []}}))
    with pytest.raises(SystemExit, match=rf"data.group_size \(in {config}\) is now data.rollout.group_size"):
        check_renamed(["fit", f"--config={config}"])
    check_renamed(["fit", "--config", str(ROOT / "configs" / "demo.yaml")])  # today's configs pass


def test_every_shipped_config_uses_the_new_names() -> None:
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        check_renamed(["fit", "--config", str(path)])
