"""Rewards the way TRL users write them: a plain function by import path (bare or in ``FunctionReward``),
its modules imported from the working directory, bad paths and bad return values refused by name, and
the example of docs/rewards.md run as written."""

from __future__ import annotations

import math
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lightning_grpo.cli import main
from lightning_grpo.rewards import ExactInteger, FunctionReward, RewardBatch, RewardComposer, RewardError
from lightning_grpo.rewards.base import RewardValueError
from lightning_grpo.rollout_engine import RolloutEngine

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "rewards.md"

SCORERS = '''
CALLS = []
NOT_CALLABLE = 3


def record(completions, **kwargs):
    CALLS.append(dict(kwargs, completions=completions))
    return [float(len(c)) for c in completions]


def brevity(completions, **kwargs):
    return [-0.01 * len(c) for c in completions]


def right(completions, answer, **kwargs):
    return [1.0 if c.strip() == a else 0.0 for c, a in zip(completions, answer)]


def too_few(completions, **kwargs):
    return [0.0]


def one_float(completions, **kwargs):
    return 0.5


def forgot_return(completions, **kwargs):
    pass


def text(completions, **kwargs):
    return ["high" for _ in completions]


def not_a_number(completions, **kwargs):
    return [float("nan") for _ in completions]
'''


@pytest.fixture()
def scorers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A module ``scorers`` of reward functions, importable by path."""
    (tmp_path / "scorers.py").write_text(SCORERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "scorers", raising=False)
    import scorers

    yield scorers
    sys.modules.pop("scorers", None)


def _batch(completions: list[str], golds: list[str], metadata: list[dict[str, Any]] | None = None) -> RewardBatch:
    n = len(completions)
    return RewardBatch(
        prompts=[f"prompt {i}" for i in range(n)], completions=completions, golds=golds,
        completion_ids=[f"p{i}/0" for i in range(n)], group_ids=[0] * n, lengths=[len(c) for c in completions],
        truncated=[False] * n, max_new_tokens=8, metadata=metadata or [],
    )


def test_a_plain_function_gets_the_data_columns_as_keyword_arguments(scorers: Any) -> None:
    batch = _batch(["12", "7"], ["12", "8"], metadata=[{"question": "5+7", "level": 1}, {"question": "3+4"}])
    composer = RewardComposer([ExactInteger(), FunctionReward("scorers.record", name="chars", weight=0.5)])
    total, parts = composer(batch)
    assert parts == {"correct": [1.0, 0.0], "chars": [2.0, 1.0]}
    assert total == [2.0, 0.5]
    (call,) = scorers.CALLS
    assert call == {
        "completions": ["12", "7"], "prompts": ["prompt 0", "prompt 1"], "answer": ["12", "8"],
        "question": ["5+7", "3+4"], "level": [1, None],
    }


def test_a_bare_import_path_in_the_rewards_is_a_function_reward_named_after_it(scorers: Any) -> None:
    engine = RolloutEngine(rewards=[ExactInteger(), "scorers.brevity"])
    correct, brevity = engine.composer.functions
    assert isinstance(brevity, FunctionReward) and (brevity.name, brevity.weight) == ("brevity", 1.0)
    assert brevity.score(_batch(["12", "1234"], ["1", "1"])) == pytest.approx([-0.02, -0.04])
    assert engine.composer.correctness is correct  # a plain function is no correctness reward by default


def test_a_function_can_be_the_correctness_reward(scorers: Any) -> None:
    engine = RolloutEngine(rewards=[FunctionReward("scorers.right", correctness=True)])
    assert engine.composer.correctness is engine.composer.functions[0]
    assert engine.composer.functions[0].score(_batch([" 4", "5"], ["4", "4"])) == [1.0, 0.0]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("scorers.nope", r"reward 'scorers.nope': scorers \(.*scorers.py\) has no 'nope'"),
        ("scorers.NOT_CALLABLE", r"reward function 'scorers.NOT_CALLABLE' is int 3, not a function"),
        ("no_such_module.reward", r"reward 'no_such_module.reward': no module 'no_such_module' \(looked in the working directory"),
        ("brevity", r"data.rollout.rewards: no class named 'brevity'\. Allowed: .*MathReward.*, or the import path of a class or function of your own \(module.name, e.g. myreward.brevity"),
        ("lightning_grpo.rewards.MathRewards", r"has no 'MathRewards'; did you mean 'lightning_grpo.rewards.MathReward'"),
        ("lightning_grpo.rewards.RewardBatch", r"is the class RewardBatch, not a function"),
    ],
)
def test_a_path_that_does_not_import_or_is_not_a_function_is_refused_by_name(scorers: Any, path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RolloutEngine(rewards=[ExactInteger(), path])


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("too_few", r"reward 'too_few' \(function scorers.too_few\) returned 1 scores for 3 completions"),
        ("one_float", r"reward 'one_float' \(function scorers.one_float\) returned float 0.5; .* a list of 3"),
        ("forgot_return", r"reward 'forgot_return' .* returned NoneType None"),
        ("text", r"reward 'text' .* returned 'high' \(str\) for completion 'p0/0': not a number"),
        ("not_a_number", r"reward 'not_a_number' .* returned nan for completion 'p0/0': not finite"),
    ],
)
@pytest.mark.parametrize("on_error", ["raise", "zero"])
def test_wrong_return_values_stop_the_run_naming_the_reward(scorers: Any, function: str, message: str, on_error: str) -> None:
    composer = RewardComposer([FunctionReward(f"scorers.{function}")], on_error=on_error)  # type: ignore[arg-type]
    with pytest.raises(RewardValueError, match=message) as error:
        composer(_batch(["1", "2", "3"], ["1", "1", "1"]))
    assert isinstance(error.value, RewardError)
    assert composer.error_counts[function] == 0  # a bug in the function, not a completion scored 0


def test_a_data_column_named_like_an_argument_is_refused(scorers: Any) -> None:
    reward = FunctionReward("scorers.brevity")
    with pytest.raises(ValueError, match="column named 'completions'"):
        reward.score(_batch(["1"], ["1"], metadata=[{"completions": "x"}]))


# ---- the command line -----------------------------------------------------------------------------
@pytest.fixture()
def working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory that is not on sys.path (as under the ``lightning-grpo`` script)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lightning-grpo"])
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "myreward", raising=False)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    yield tmp_path
    sys.modules.pop("myreward", None)


def printed_rewards(args: list[str], capsys: pytest.CaptureFixture[str]) -> list[Any]:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err[-2000:]
    return yaml.safe_load(capsys.readouterr().out)["data"]["rollout"]["init_args"]["rewards"]


def test_a_reward_module_in_the_working_directory_imports_without_pythonpath(
    working_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (working_directory / "myreward.py").write_text(
        "from lightning_grpo.rewards import RewardFunction\n\n"
        "class Short(RewardFunction):\n"
        "    def __init__(self, name: str = 'short', weight: float = 1.0) -> None:\n"
        "        super().__init__(name=name, weight=weight)\n"
    )
    rewards = printed_rewards(["fit", "--config", "configs/demo.yaml", "--data.rollout.rewards+=myreward.Short"], capsys)
    assert rewards[1] == {"class_path": "myreward.Short", "init_args": {"name": "short", "weight": 1.0}}


def documented_example() -> tuple[str, list[list[str]], str]:
    """docs/rewards.md's ``myreward.py``, its ``lightning-grpo fit`` commands (as argument lists) and its YAML."""
    text = DOC.read_text()
    module = re.search(r"```python\n(# myreward\.py\n.*?)```", text, re.S)
    config = re.search(r"```yaml\n(data:\n.*?)```", text, re.S)
    assert module is not None and config is not None, "docs/rewards.md lost its example"
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        commands += [shlex.split(line)[1:] for line in joined.splitlines() if line.startswith("lightning-grpo fit")]
    return module.group(1), commands, config.group(1)


def test_the_documented_example_works_as_written(working_directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module, commands, config = documented_example()
    (working_directory / "myreward.py").write_text(module)
    bare, wrapped, stacked = commands
    assert [r if isinstance(r, str) else r["class_path"] for r in printed_rewards(bare, capsys)] == [
        "lightning_grpo.rewards.ExactInteger", "myreward.brevity",
    ]
    wrapped_rewards = printed_rewards(wrapped, capsys)
    assert wrapped_rewards[1]["init_args"] == {
        "function": "myreward.same_length", "name": "length_match", "weight": 0.5, "correctness": False, "correct_value": 1.0,
    }
    assert wrapped_rewards[2] == {"class_path": "myreward.NoSpaces", "init_args": {"name": "no_spaces", "weight": 1.0, "bonus": 0.2}}
    (working_directory / "rewards.yaml").write_text(config)
    from_yaml = printed_rewards(["fit", "--config", "configs/demo.yaml", "--config", "rewards.yaml"], capsys)
    assert from_yaml[1:] == ["myreward.brevity", wrapped_rewards[1], wrapped_rewards[2]]
    assert [r["class_path"] for r in printed_rewards(stacked, capsys)] == ["lightning_grpo.rewards.MathReward"]
    # the functions score as the doc says
    engine = RolloutEngine(rewards=[ExactInteger(), "myreward.brevity", FunctionReward("myreward.same_length"), "myreward.NoSpaces"])
    _, parts = engine.composer(_batch(["42", "4 2", "4"], ["42", "42", "42"]))
    assert parts["brevity"] == pytest.approx([-0.02, -0.03, -0.01])
    assert parts["same_length"] == [0.1, 0.0, 0.0]
    assert parts["no_spaces"] == [0.1, 0.0, 0.1]


def test_the_documented_command_trains_a_step_with_the_function(  # ~3 s: a tiny model, 2 prompts x 2
    working_directory: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tools.curves import read_scalars

    module, commands, _ = documented_example()
    (working_directory / "myreward.py").write_text(module)
    main([
        *commands[0], "--prepare=null", f"--model.model_name_or_path={tiny_model_dir}", "--trainer.max_steps=1",
        "--trainer.logger.init_args.save_dir=logs", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false",
        "--data.prompts_per_step=2", "--data.rollout.group_size=2",
    ])
    (run,) = (working_directory / "logs" / "demo").glob("version_*")
    scalars = read_scalars(run)
    assert "reward/brevity" in scalars and "reward/correct" in scalars
    ((step, value),) = scalars["reward/brevity"]
    assert step == 0 and -0.08 - 1e-6 <= value <= 0.0 and not math.isnan(value)  # at most 8 characters, -0.01 each
