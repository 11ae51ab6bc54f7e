"""The objectives' options through the real CLI parser (``lightning_grpo.cli``, in process).

The six shared options are declared once, on :class:`Objective`; each objective forwards them with
``**shared``. These tests check that jsonargparse still lists every option of every objective flat,
with the objective's own defaults, that both override spellings reach the constructed objective, and
that GTPO's renamed option is an error naming its new name.
"""

from __future__ import annotations

import pytest
import yaml
from jsonargparse import ArgumentParser

from lightning_grpo.cli import main
from lightning_grpo.objectives import GTPO, Objective

SHARED = {"beta", "kl_estimator", "kl_ratio_weighted", "aggregation", "loss_scale_factor", "entropy_bonus"}
OWN = {
    "GRPO": {"epsilon_low", "epsilon_high", "dual_clip"},
    "DAPO": {"epsilon_low", "epsilon_high", "dual_clip"},
    "DrGRPO": {"epsilon", "epsilon_high", "dual_clip"},
    "CISPO": {"epsilon_max", "epsilon_min"},
    "GMPO": {"epsilon_low", "epsilon_high"},
    "GSPO": {"epsilon_low", "epsilon_high"},
    "ABCGRPO": {"epsilon_1", "epsilon_2", "epsilon_3", "epsilon_4"},
    "RGRA": set(),
}
# the defaults that differ between objectives (each paper's)
DEFAULTS = {
    "GRPO": {"beta": 0.04, "aggregation": "seq_mean_token_mean", "epsilon_high": 0.2},
    "DAPO": {"beta": 0.0, "aggregation": "token_mean", "epsilon_low": 0.2, "epsilon_high": 0.28},
    "DrGRPO": {"beta": 0.0, "aggregation": "constant_norm"},
    "CISPO": {"beta": 0.0, "aggregation": "token_mean", "epsilon_max": 5.0},
    "RGRA": {"beta": 0.005, "aggregation": "seq_mean_token_mean"},
    "GSPO": {"epsilon_low": 3e-4, "epsilon_high": 4e-4},
}


def printed_objective(capsys: pytest.CaptureFixture[str], *overrides: str) -> dict:
    """The ``model.objective`` section that ``lightning-grpo fit ... --print_config`` prints."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *overrides, "--print_config"])
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None), out
    return yaml.safe_load(out)["model"]["objective"]


def build(section: dict) -> Objective:
    """The objective a printed section describes, built by jsonargparse as the CLI builds it."""
    parser = ArgumentParser()
    parser.add_argument("--objective", type=Objective)
    return parser.instantiate(parser.parse_object({"objective": section})).objective


def cli_error(capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *overrides, "--print_config"])
    assert exit_info.value.code not in (0, None)
    captured = capsys.readouterr()
    return captured.err + captured.out


@pytest.mark.parametrize("name", sorted(OWN))
def test_every_objective_lists_its_own_and_the_shared_options_flat(capsys, name: str) -> None:
    section = printed_objective(capsys, f"--model.objective={name}")
    assert section["class_path"] == f"lightning_grpo.objectives.{name}"
    assert set(section["init_args"]) == OWN[name] | SHARED
    for option, value in DEFAULTS.get(name, {}).items():
        assert section["init_args"][option] == value, option
    # what is printed builds the objective it describes
    objective = build(section)
    assert type(objective).__name__ == name
    for option in SHARED - {"entropy_bonus"}:
        assert getattr(objective, option) == section["init_args"][option], option


def test_gtpo_lists_its_own_options_and_only_the_entropy_bonus(capsys) -> None:
    section = printed_objective(capsys, "--model.objective=GTPO")
    assert set(section["init_args"]) == {
        "w_pos", "w_neg", "entropy_threshold", "entropy_coef", "conflict_norm", "completion_reduction", "entropy_bonus"
    }
    assert section["init_args"]["completion_reduction"] == "mean"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["--model.objective=DAPO", "--model.objective.beta=0.01"], {"beta": 0.01, "epsilon_high": 0.28}),
        (["--model.objective=DAPO", "--model.objective.init_args.epsilon_low=0.1"], {"epsilon_low": 0.1}),
        (["--model.objective=GRPO", "--model.objective.init_args.beta=0.1", "--model.objective.kl_estimator=k2"],
         {"beta": 0.1, "kl_estimator": "k2", "epsilon_high": 0.2}),
        (["--model.objective=DrGRPO", "--model.objective.loss_scale_factor=512", "--model.objective.dual_clip=3"],
         {"loss_scale_factor": 512.0, "dual_clip": 3.0, "aggregation": "constant_norm"}),
        (["--model.objective=GTPO", "--model.objective.completion_reduction=sum"], {"completion_reduction": "sum"}),
    ],
)
def test_overrides_reach_the_constructed_objective(capsys, overrides: list[str], expected: dict) -> None:
    section = printed_objective(capsys, *overrides)
    objective = build(section)
    for option, value in expected.items():
        assert section["init_args"][option] == value
        assert getattr(objective, option) == value


def test_an_entropy_bonus_given_on_the_command_line_is_built(capsys) -> None:
    section = printed_objective(
        capsys, "--model.objective=CISPO", "--model.objective.entropy_bonus.coef=0.01",
        "--model.objective.entropy_bonus.adaptive=true",
    )
    objective: Objective = build(section)
    assert objective.entropy_bonus is not None
    assert objective.entropy_bonus.coef == 0.01 and objective.entropy_bonus.adaptive
    assert objective.differentiable_entropy


def test_a_bad_shared_value_is_an_error_naming_it(capsys) -> None:
    message = cli_error(capsys, "--model.objective=GSPO", "--model.objective.aggregation=token_median")
    assert "token_median" in message


def test_gtpo_old_aggregation_name_is_refused(capsys) -> None:
    assert "aggregation" in cli_error(capsys, "--model.objective=GTPO", "--model.objective.aggregation=sum")
    with pytest.raises(TypeError, match="completion_reduction"):
        GTPO(aggregation="sum")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="nonsense"):
        GTPO(nonsense=1)  # type: ignore[call-arg]
