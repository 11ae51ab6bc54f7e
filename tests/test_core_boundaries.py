"""The core knows nothing of the demo, and its defaults are neutral: no source or reward is chosen for you."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lightning_grpo.data import RolloutDataModule
from lightning_grpo.renamed_options import check_renamed
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rollout_engine import RolloutEngine

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_grpo"


def test_no_core_module_imports_the_demo() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "demo" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("lightning_grpo.demo")]
    assert offenders == []


def test_a_data_module_without_a_source_says_what_to_name(tmp_path: Path) -> None:
    data = RolloutDataModule(tokenizer=str(tmp_path), rollout=RolloutEngine(rewards=[ExactInteger()]))
    with pytest.raises(ValueError, match=r"no data.source: .*JsonlProblems.*demo.arithmetic.Arithmetic"):
        data.setup("fit")


def test_an_engine_without_rewards_says_what_to_name() -> None:
    with pytest.raises(ValueError, match=r"no data.rollout.rewards: .*MathReward"):
        RolloutEngine()
    with pytest.raises(ValueError, match=r"no data.rollout: .*rewards"):
        RolloutDataModule()


def test_the_old_warm_start_key_and_the_moved_arithmetic_name_their_new_places(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"warm_start \(in the command line\) is now prepare \(class_path: "
                       r"lightning_grpo.demo.warm_start.WarmStart"):
        check_renamed(["fit", "--warm_start.steps=3"])
    config = tmp_path / "old.yaml"
    config.write_text("data:\n  source:\n    class_path: lightning_grpo.sources.Arithmetic\n")
    with pytest.raises(SystemExit, match=r"lightning_grpo.sources.Arithmetic \(in .*old.yaml\) is now "
                       r"lightning_grpo.demo.arithmetic.Arithmetic"):
        check_renamed(["fit", "--config", str(config)])


@pytest.mark.parametrize("form", ["-c {}", "-c={}", "--config={}"])
def test_old_names_in_a_config_file_given_by_any_form_of_the_flag_are_refused(tmp_path: Path, form: str) -> None:
    config = tmp_path / "old.yaml"
    config.write_text("data:\n  source:\n    class_path: lightning_grpo.sources.Arithmetic\n")
    with pytest.raises(SystemExit, match=r"lightning_grpo.sources.Arithmetic \(in .*old.yaml\) is now"):
        check_renamed(["fit", *form.format(config).split(" ")])
