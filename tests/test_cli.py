"""The CLI end to end, as subprocesses: the demo config trains and logs; the config prints and overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.curves import read_scalars

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightning_grpo.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_demo_config_trains_three_steps_and_logs_entropy_and_reward(tmp_path: Path) -> None:
    result = _cli(
        "fit",
        "--config", "configs/demo.yaml",
        "--trainer.max_steps=3",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        f"--model.model_name_or_path={tmp_path / 'warm'}",
        f"--prepare.output_dir={tmp_path / 'warm'}",
        "--prepare.steps=20",
        "--prepare.model.hidden_size=64",
        "--prepare.model.num_layers=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "warm" / "config.json").exists()  # the warm start saved a loadable checkpoint
    assert "warm start: building the demo model at" in result.stderr + result.stdout  # it says what it builds
    assert list((tmp_path / "warm_logs").glob("version_*/events.out.tfevents.*"))  # a Lightning run with logs
    runs = list((tmp_path / "demo").glob("version_*"))
    assert len(runs) == 1 and list(runs[0].glob("events.out.tfevents.*"))
    scalars = read_scalars(runs[0])
    for tag in ("train/entropy", "reward/total", "reward/correct", "train/accuracy", "train/kl", "train/clip_frac_low",
                "train/clip_frac_high", "completions/length_mean", "completions/length_max",
                "completions/truncated_frac", "train/zero_variance_frac", "train/grad_norm", "train/lr",
                "time/generation_s", "time/update_s", "time/tokens_per_s"):
        assert tag in scalars, f"{tag} missing from {sorted(scalars)}"
    assert [step for step, _ in scalars["train/entropy"]] == [0, 1, 2]  # one point per rollout
    entropies = [v for _, v in scalars["train/entropy"]]
    assert all(0 < h < 5 for h in entropies)  # nats over a 100-token vocabulary: 0 < H < ln 100
    assert all(0 <= v <= 1 for _, v in scalars["train/accuracy"])


@pytest.mark.slow
def test_a_hub_id_with_the_demo_config_builds_no_stand_in(tmp_path: Path) -> None:
    """The warm start builds only at its own output_dir: a hub id is never shadowed by a tiny model."""
    result = _cli(
        "fit", "--config", str(ROOT / "configs/demo.yaml"), "--model.model_name_or_path=Qwen/Qwen2.5-0.5B-Instruct",
        "--trainer.max_steps=1", cwd=tmp_path, timeout=120,
    )
    assert result.returncode != 0  # no hub here: the model cannot load
    assert "warm start skipped" in result.stderr + result.stdout
    assert "Qwen/Qwen2.5-0.5B-Instruct" in result.stderr  # the error names the model
    assert not (tmp_path / "Qwen").exists() and not (tmp_path / "runs" / "demo" / "warm_start").exists()


@pytest.mark.slow
def test_print_config_resolves_and_command_line_overrides(tmp_path: Path) -> None:
    result = _cli("fit", "--config", "configs/demo.yaml", "--model.objective.epsilon_high=0.28", "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "epsilon_high: 0.28" in result.stdout
    assert "class_path: lightning_grpo.objectives.GRPO" in result.stdout
    assert "group_size: 8" in result.stdout


@pytest.mark.slow
def test_the_optimizer_is_configured_on_the_module_only() -> None:
    """GRPOModule builds its optimizer from model.optimizer.learning_rate etc.; Lightning's --optimizer and
    --lr_scheduler would be offered and then fail with "optimizer got an empty parameter list"."""
    result = _cli("fit", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--model.optimizer.learning_rate" in result.stdout
    assert "--optimizer" not in result.stdout and "--lr_scheduler" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "override", ["--model.objective=NoSuchObjective", '--data.rollout.rewards=[{"class_path": "NoSuchReward"}]']
)
def test_unknown_objective_or_reward_name_is_a_clear_error(override: str) -> None:
    result = _cli("fit", "--config", "configs/demo.yaml", override, "--print_config")
    assert result.returncode != 0
    name = "NoSuchObjective" if "objective" in override else "NoSuchReward"
    assert name in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")))
def test_every_shipped_config_parses(config: str) -> None:
    args = ["fit", "--config", "configs/demo.yaml"] if config != "configs/demo.yaml" else ["fit"]
    result = _cli(*args, "--config", config, "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
