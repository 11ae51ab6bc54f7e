"""Objective recipes stack on any task: the task's rewards stay, the method's shaping is added and sized
from the task's budget; ``--data.rollout.rewards+=`` adds to the task's list. All through the real CLI
parser (``--print_config``), then the printed ``data.rollout`` built as the CLI builds it (jsonargparse)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonargparse import ArgumentParser

from lightning_grpo.cli import main
from lightning_grpo.rewards import AGPOLengthReward, OverlongPenalty, RewardBatch
from lightning_grpo.rollout_engine import RolloutEngine

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DEMO = str(CONFIGS / "demo.yaml")
GSM8K = str(CONFIGS / "recipes" / "gsm8k_qwen2.5_0.5b.yaml")
COUNTDOWN = str(CONFIGS / "tasks" / "countdown.yaml")
OBJECTIVES = sorted(CONFIGS.glob("objectives/*.yaml"))


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["lightning-grpo"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # main puts the working directory on it


def printed_rollout(*args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``data.rollout`` as ``fit ARGS --print_config`` resolves it."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)["data"]["rollout"]


def built_engine(rollout: dict[str, Any]) -> RolloutEngine:
    """The engine the CLI would build from a printed ``data.rollout``."""
    parser = ArgumentParser()
    parser.add_argument("--rollout", type=RolloutEngine)
    return parser.instantiate(parser.parse_object({"rollout": rollout})).rollout


def rewards_of(engine: RolloutEngine) -> list[tuple[str, str, float]]:
    return [(type(f).__name__, f.name, f.weight) for f in engine.composer.functions]


def _lengths_batch(lengths: list[int], max_new_tokens: int) -> RewardBatch:
    n = len(lengths)
    return RewardBatch(
        prompts=["q"] * n, completions=["x"] * n, golds=["1"] * n, completion_ids=[f"p/{i}" for i in range(n)],
        group_ids=[0] * n, lengths=lengths, truncated=[False] * n, max_new_tokens=max_new_tokens,
    )


def test_dapo_on_the_demo_resolves_to_the_same_rewards_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    engine = built_engine(printed_rollout("--config", DEMO, "--config", str(CONFIGS / "objectives/dapo.yaml"), capsys=capsys))
    assert rewards_of(engine) == [("ExactInteger", "correct", 1.0), ("OverlongPenalty", "overlong", 1.0)]
    overlong = engine.composer.functions[1]
    batch = _lengths_batch(list(range(12)), max_new_tokens=8)  # the demo's budget
    assert overlong.score(batch) == OverlongPenalty(cache_len=4).score(batch)  # DAPO's demo recipe until now
    assert engine.dynamic_sampling is not None and engine.dynamic_sampling.max_extra_rounds == 4


def test_dapo_on_gsm8k_keeps_math_reward_and_sizes_the_penalty_from_its_budget(capsys: pytest.CaptureFixture[str]) -> None:
    rollout = printed_rollout("--config", GSM8K, "--config", str(CONFIGS / "objectives/dapo.yaml"), capsys=capsys)
    assert rollout["init_args"]["sampling"]["max_new_tokens"] == 512
    engine = built_engine(rollout)
    assert rewards_of(engine) == [("MathReward", "correct", 1.0), ("OverlongPenalty", "overlong", 1.0)]
    assert engine.composer.correctness is engine.composer.functions[0]
    overlong = engine.composer.functions[1]
    assert overlong.cache_tokens(512) == 256  # not the demo's 4
    values = overlong.score(_lengths_batch([200, 256, 257, 384, 512, 513], max_new_tokens=512))
    assert values == pytest.approx([0.0, 0.0, -1 / 256, -0.5, -1.0, -1.0])


def test_agpo_on_countdown_keeps_the_countdown_reward(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--config", DEMO, "--config", COUNTDOWN, "--config", str(CONFIGS / "objectives/agpo.yaml"))
    engine = built_engine(printed_rollout(*args, capsys=capsys))
    assert rewards_of(engine) == [("CountdownReward", "correct", 1.0), ("AGPOLengthReward", "length", 1.0)]
    length = engine.composer.functions[1]
    assert isinstance(length, AGPOLengthReward) and length.alpha == 0.1
    assert length._judge is engine.composer.functions[0]  # bound to the task's correctness reward


@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda p: p.stem)
def test_every_objective_recipe_keeps_the_tasks_rewards(objective: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rollout = printed_rollout("--config", GSM8K, "--config", str(objective), capsys=capsys)
    assert [r["class_path"] for r in rollout["init_args"]["rewards"]] == ["lightning_grpo.rewards.MathReward"]


MODULE = '''
from lightning_grpo.rewards import RewardFunction


class Short(RewardFunction):
    def __init__(self, name: str = "short", weight: float = 1.0) -> None:
        super().__init__(name=name, weight=weight)

    def score_one(self, prompt, completion, gold, metadata):
        return -len(completion) / 100
'''


@pytest.mark.parametrize(
    ("configs", "expected"),
    [
        ((DEMO,), ["ExactInteger", "Short"]),
        ((GSM8K,), ["MathReward", "Short"]),
        ((DEMO, COUNTDOWN), ["CountdownReward", "Short"]),
    ],
    ids=["demo", "gsm8k", "countdown"],
)
def test_appending_a_reward_on_the_command_line_keeps_the_configs(
    configs: tuple[str, ...], expected: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "appended_reward.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    config_args = [a for c in configs for a in ("--config", c)]
    for objective in ("dapo", "agpo"):  # before or after the objective recipe: the same list
        objective_args = ["--config", str(CONFIGS / f"objectives/{objective}.yaml")]
        for args in (
            [*config_args, *objective_args, "--data.rollout.rewards+=appended_reward.Short"],
            [*config_args, "--data.rollout.rewards+=appended_reward.Short", *objective_args],
        ):
            rewards = printed_rollout(*args, capsys=capsys)["init_args"]["rewards"]
            assert [r["class_path"].rsplit(".", 1)[-1] for r in rewards] == expected, args
