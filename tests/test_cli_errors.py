"""The command line's errors, in process: one clear line for bad input, names to choose from, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_grpo.cli import main
from lightning_grpo.class_name_hints import unknown_class_hint

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo.yaml")


@pytest.fixture(autouse=True)
def _argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["lightning-grpo"])  # main(args) as the console script would see it


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    code = exited.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "option_name", "close", "also_allowed"),
    [
        ("--model.objective=GRPOO", "model.objective", "GRPO", "DAPO"),
        ("--model.advantage=GroupNormalised", "model.advantage", "GroupNormalized", "MeanCentered"),
        ("--data.rollout.sampler=HFSamplr", "data.rollout.sampler", "HFSampler", "FastSampler"),
    ],
)
def test_a_misspelled_class_name_is_one_line_with_the_allowed_names(
    capsys: pytest.CaptureFixture[str], option: str, option_name: str, close: str, also_allowed: str
) -> None:
    code, err = _run(capsys, "fit", "--config", DEMO, option, "--print_config")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # no usage text
    assert lines[0].startswith(f"error: {option_name}: no class named ")
    assert f"did you mean {close}?" in lines[0]
    allowed = lines[0].split("Allowed: ", 1)[1]
    assert also_allowed in allowed.split(", ")


def test_a_misspelled_reward_name_is_one_line_with_the_allowed_names(capsys: pytest.CaptureFixture[str]) -> None:
    # A bare name in data.rollout.rewards could be a function's path: it is refused when the engine is built
    # (a ConfigurationError that jsonargparse re-raises as its own ValueError), still as one line.
    code, err = _run(capsys, "fit", "--config", DEMO, "--data.rollout.rewards+=MathRewards", "--trainer.max_steps=0")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: data.rollout.rewards: no class named 'MathRewards'; did you mean MathReward?")
    assert "ExactInteger" in lines[0].split("Allowed: ", 1)[1].split(", ")


def test_a_class_path_that_does_not_import_is_named_with_its_closest_class() -> None:
    message = (
        'Parser key "model.objective":\n  - Expected a path but lightning_grpo.objectives.GRPOO either not accessible\n'
        "  Subtypes: [<class 'lightning_grpo.objectives.base.Objective'>, <class 'NoneType'>]\n  Errors:\n"
        "    - Problem with given class_path 'lightning_grpo.objectives.GRPOO':\n"
        "        module 'lightning_grpo.objectives' has no attribute 'GRPOO'\n"
    )
    hint = unknown_class_hint(message)
    assert hint is not None and hint.startswith("model.objective: no class named 'lightning_grpo.objectives.GRPOO'")
    assert "did you mean GRPO?" in hint
    assert unknown_class_hint("Option 'epsilonn' is not accepted") is None  # not about a class name


def test_other_parse_errors_come_without_the_usage_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "fit", "--config", DEMO, "--model.objective.epsilonn=0.1", "--print_config")
    assert code == 2
    assert "epsilonn" in err and "usage:" not in err and len(err.splitlines()) < 20


def test_test_and_predict_are_not_offered(capsys: pytest.CaptureFixture[str]) -> None:
    for subcommand in ("test", "predict"):
        code, err = _run(capsys, subcommand, "--config", DEMO)
        assert code == 2 and "invalid choice" in err and "'fit', 'validate'" in err


def test_the_top_level_help_names_fit_validate_export_and_verify(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    listed = out.split("Available subcommands:", 1)[1]
    assert "fit" in listed and "validate" in listed and "test " not in listed and "predict" not in listed
    assert "lightning-grpo export --ckpt_path" in " ".join(out.split()) and "lightning-grpo verify" in out


@pytest.mark.parametrize(
    ("option", "instead"),
    [
        ("--trainer.gradient_clip_val=1.0", "model.optimizer.max_grad_norm"),
        ("--trainer.accumulate_grad_batches=4", "model.update.micro_batch_size"),
    ],
)
def test_trainer_options_manual_optimisation_refuses_point_to_ours(
    capsys: pytest.CaptureFixture[str], option: str, instead: str
) -> None:
    code, err = _run(capsys, "fit", "--config", DEMO, option, "--prepare=null", "--model.model_name_or_path=nowhere")
    assert code == 1
    name = option[2:].split("=")[0]
    assert err.strip().splitlines()[-1].startswith(f"error: {name}=") and instead in err
    assert "Traceback" not in err


def test_a_config_that_leaves_those_trainer_options_off_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "printed.yaml"  # what --print_config writes: every trainer option, these ones off
    config.write_text("trainer:\n  gradient_clip_val: null\n  gradient_clip_algorithm: null\n  accumulate_grad_batches: 1\n")
    code, err = _run(capsys, "fit", "--config", DEMO, "--config", str(config), "--print_config")
    assert code == 0, err


def test_a_bad_value_the_project_checks_is_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(
        capsys, "fit", "--config", DEMO, "--model.optimizer.learning_rate=-1", "--prepare=null",
        "--model.model_name_or_path=nowhere", "--trainer.logger=false",
    )
    assert code == 1
    assert err.strip().splitlines()[-1] == "error: model.optimizer.learning_rate must be > 0, got -1.0"
    assert "Traceback" not in err


def test_a_malformed_data_line_ends_the_run_with_one_line_and_no_run_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"problem": "1+1=", "answer": "2"}) + "\n" + json.dumps({"problem": " ", "answer": "1"}) + "\n")
    code, err = _run(
        capsys, "fit", "--config", DEMO, "--prepare=null", f"--model.model_name_or_path={tiny_model_dir}",
        "--data.source=lightning_grpo.sources.JsonlProblems", f"--data.source.train_path={data}",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}", "--trainer.enable_progress_bar=false",
    )
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: dataset ") and "bad.jsonl" in last and "row 2 (line 2)" in last
    assert "Traceback" not in err
    # the run failed before its first step: it leaves no version_0 holding only its config
    assert not (tmp_path / "runs" / "demo" / "version_0").exists()
    assert "removed the run folder" in err


def test_fit_help_describes_the_project_options_and_lists_them_first(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    lines = capsys.readouterr().out.splitlines()
    head = "\n".join(lines[:150])
    assert "lightning_grpo.data.RolloutDataModule" in head and "lightning_grpo.module.GRPOModule" in head
    text = " ".join("\n".join(lines).split(" "))
    learning_rate = text.split("\n  --model.optimizer.learning_rate LEARNING_RATE", 1)[1].split("--model.", 1)[0]
    assert "peak learning rate" in " ".join(learning_rate.split())
    with pytest.raises(SystemExit):
        main(["fit", "--data.rollout.help", "RolloutEngine"])
    rollout = capsys.readouterr().out
    temperature = rollout.split("\n  --data.rollout.sampling.temperature TEMPERATURE", 1)[1].split("--data.", 1)[0]
    top_p = rollout.split("\n  --data.rollout.sampling.top_p TOP_P", 1)[1].split("--data.", 1)[0]
    assert "divides the logits" in " ".join(temperature.split()) and "nucleus sampling" in " ".join(top_p.split())


def test_every_data_and_model_option_in_fit_help_has_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    entries = [e for e in text.split("\n  --")[1:] if e.startswith(("data.", "model.")) and ".help " not in e.split("\n")[0]]
    assert len(entries) > 20
    undescribed = []
    for entry in entries:
        first, *rest = entry.split("\n")
        words = first.split(None, 1)  # "model.x X   description..." or the description on the next line
        description = " ".join(([words[1].split(None, 1)[1]] if len(words[1].split(None, 1)) > 1 else []) if len(words) > 1 else [])
        description = (description + " " + " ".join(r.strip() for r in rest)).strip()
        if description.startswith(("(type:", "(required")) or not description:
            undescribed.append(first.split()[0])
    assert undescribed == []


def test_an_append_before_a_config_that_would_drop_it_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # jsonargparse applies arguments in order: the demo config would set data.rollout.rewards again and the
    # appended reward would be gone without a word.
    code, err = _run(capsys, "fit", "--data.rollout.rewards+=lightning_grpo.rewards.FormatReward", "--config", DEMO,
                     "--print_config")
    assert code == 2
    assert err.strip() == (
        f"error: --data.rollout.rewards+=lightning_grpo.rewards.FormatReward comes before --config {DEMO}, which sets "
        "data.rollout.rewards again and would silently drop what it adds: put it after the --config files"
    )


@pytest.mark.parametrize("config_args", [("-c", DEMO), (f"-c={DEMO}",), (f"--config={DEMO}",)])
def test_an_append_before_a_short_or_joined_config_option_is_refused(
    capsys: pytest.CaptureFixture[str], config_args: tuple[str, ...]
) -> None:
    code, err = _run(capsys, "fit", "--data.rollout.rewards+=lightning_grpo.rewards.FormatReward", *config_args, "--print_config")
    assert code == 2
    assert err.strip().startswith(f"error: --data.rollout.rewards+=lightning_grpo.rewards.FormatReward comes before --config {DEMO}, ")


def test_an_append_after_the_configs_extends_their_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", DEMO, "--data.rollout.rewards+=lightning_grpo.rewards.FormatReward", "--print_config"])
    assert exited.value.code in (0, None)
    out = capsys.readouterr().out
    assert "lightning_grpo.rewards.ExactInteger" in out and "lightning_grpo.rewards.FormatReward" in out
