"""--ckpt_path=last resumes this run's newest checkpoint in its own folder; a run says where its things go."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from jsonargparse import Namespace

from lightning_grpo.cli import main
from lightning_grpo.errors import ConfigurationError
from lightning_grpo.resume import checkpoint_step, resolve_checkpoint_path, resumed_config_filename

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo.yaml")
TB = "lightning.pytorch.loggers.TensorBoardLogger"
CSV = "lightning.pytorch.loggers.CSVLogger"


@pytest.fixture(autouse=True)
def _argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["lightning-grpo"])


def _touch(path: Path, age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def _section(ckpt_path: str, logger: object, callbacks: object = None, root: Path | None = None) -> Namespace:
    trainer = Namespace(logger=logger, callbacks=callbacks, default_root_dir=str(root) if root else None)
    return Namespace(ckpt_path=ckpt_path, trainer=trainer)


def _tb(save_dir: Path, name: str = "demo", version: int | None = None) -> Namespace:
    return Namespace(class_path=TB, init_args=Namespace(save_dir=str(save_dir), name=name, version=version))


def test_last_is_the_newest_checkpoint_of_the_newest_version_that_has_one(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _touch(runs / "demo/version_0/checkpoints/last.ckpt", age_s=100)
    _touch(runs / "demo/version_1/checkpoints/step=4.ckpt", age_s=50)
    newest = _touch(runs / "demo/version_1/checkpoints/last.ckpt", age_s=10)
    _touch(runs / "demo/version_2/config.yaml")  # a run that failed before writing a checkpoint
    section = _section("last", _tb(runs))
    said = resolve_checkpoint_path(section, pin_version=True)
    assert section.ckpt_path == str(newest)
    assert section.trainer.logger.init_args.version == 1  # resumes into version_1, not a new version_3
    assert said is not None
    assert said.message == f"--ckpt_path=last: resuming from {newest}, logging into {runs / 'demo' / 'version_1'}"
    assert said.log_dir == runs / "demo" / "version_1"  # the config goes to config_resumed_step*.yaml there


def test_last_with_nothing_to_resume_is_refused_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=rf"--ckpt_path=last: no checkpoint in {tmp_path}/demo/version_\*/checkpoints"):
        resolve_checkpoint_path(_section("last", _tb(tmp_path)), pin_version=True)


def test_last_with_the_default_logger_looks_in_lightning_logs(tmp_path: Path) -> None:
    newest = _touch(tmp_path / "lightning_logs/version_3/checkpoints/step=9.ckpt")
    section = _section("last", None, root=tmp_path)
    resolve_checkpoint_path(section, pin_version=True)
    assert section.ckpt_path == str(newest)
    assert section.trainer.logger.class_path == TB and section.trainer.logger.init_args.version == 3


def test_last_with_a_checkpoint_dirpath_looks_there_and_keeps_the_version(tmp_path: Path) -> None:
    newest = _touch(tmp_path / "ckpts/step=2.ckpt")
    callback = Namespace(class_path="lightning_grpo.callbacks.PeriodicCheckpoint", init_args=Namespace(dirpath=str(tmp_path / "ckpts")))
    export = Namespace(class_path="lightning_grpo.export.ExportHuggingFace", init_args=Namespace(dirpath=str(tmp_path / "hf")))
    section = _section("last", _tb(tmp_path / "runs"), callbacks=[export, callback])
    resolve_checkpoint_path(section, pin_version=True)
    assert section.ckpt_path == str(newest)
    assert section.trainer.logger.init_args.version is None


def test_an_explicit_checkpoint_in_a_version_folder_logs_into_that_folder(tmp_path: Path) -> None:
    ckpt = _touch(tmp_path / "runs/demo/version_4/checkpoints/step=7.ckpt")
    section = _section(str(ckpt), _tb(tmp_path / "runs"))
    resolve_checkpoint_path(section, pin_version=True)
    assert section.ckpt_path == str(ckpt) and section.trainer.logger.init_args.version == 4
    elsewhere = _touch(tmp_path / "saved/step=7.ckpt")
    section = _section(str(elsewhere), _tb(tmp_path / "runs"))
    resolve_checkpoint_path(section, pin_version=True)
    assert section.trainer.logger.init_args.version is None
    section = _section(str(ckpt), _tb(tmp_path / "runs"))
    resolve_checkpoint_path(section, pin_version=False)  # validate: a new folder as before
    assert section.trainer.logger.init_args.version is None


def test_a_csv_logger_resumes_into_a_new_version_folder_and_says_so(tmp_path: Path) -> None:
    # Lightning's CSVLogger deletes the metrics.csv of a non-empty folder: pinning its version would lose the first part's
    runs = tmp_path / "runs"
    ckpt = _touch(runs / "demo/version_0/checkpoints/last.ckpt")
    csv = Namespace(class_path=CSV, init_args=Namespace(save_dir=str(runs), name="demo", version=None))
    section = _section("last", csv)
    said = resolve_checkpoint_path(section, pin_version=True)
    assert section.ckpt_path == str(ckpt) and section.trainer.logger.init_args.version is None
    assert said is not None and said.log_dir is None  # a new folder: its config is config.yaml
    assert said.message == (
        f"--ckpt_path=last: resuming from {ckpt}, CSVLogger logging into a new version folder under {runs / 'demo'} "
        f"(it would replace {runs / 'demo' / 'version_0' / 'metrics.csv'})"
    )
    both = [_tb(runs), Namespace(class_path=CSV, init_args=Namespace(save_dir=str(runs), name="demo", version=None))]
    section = _section("last", both)
    said = resolve_checkpoint_path(section, pin_version=True)
    assert [l.init_args.version for l in section.trainer.logger] == [0, None]
    assert said is not None and said.log_dir == runs / "demo" / "version_0"
    assert f"logging into {runs / 'demo' / 'version_0'}, CSVLogger logging into a new version folder" in said.message


def test_a_resumed_config_is_named_after_the_checkpoints_step(tmp_path: Path) -> None:
    saved = tmp_path / "last.ckpt"
    torch.save({"global_step": 12, "state_dict": {"w": torch.zeros(2)}}, saved)
    assert checkpoint_step(saved) == 12 and resumed_config_filename(saved) == "config_resumed_step12.yaml"
    named = _touch(tmp_path / "step=7.ckpt")  # not a torch file: the name says the step
    assert checkpoint_step(named) == 7
    unknown = _touch(tmp_path / "other.ckpt")
    assert checkpoint_step(unknown) is None and resumed_config_filename(unknown) == "config_resumed.yaml"


@pytest.mark.parametrize(("rank_env", "printed"), [({}, True), ({"LOCAL_RANK": "1"}, False), ({"RANK": "3", "LOCAL_RANK": "0"}, False)])
def test_the_resuming_line_comes_from_rank_zero_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rank_env: dict[str, str], printed: bool
) -> None:
    for name in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in rank_env.items():
        monkeypatch.setenv(name, value)
    ckpt = tmp_path / "demo/version_0/checkpoints/step=3.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"global_step": 3}, ckpt)  # Lightning's CLI reads the hyperparameters of a checkpoint file
    with pytest.raises(SystemExit):  # the bad learning rate stops it after the line, before anything is built
        main(["fit", "--config", DEMO, "--prepare=null", "--model.model_name_or_path=nowhere", "--model.optimizer.learning_rate=-1",
              f"--ckpt_path={ckpt}", f"--trainer.logger.init_args.save_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert (f"logging into {tmp_path / 'demo' / 'version_0'}" in err) == printed, err


def test_the_cli_refuses_last_without_a_checkpoint_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", DEMO, "--ckpt_path=last", f"--trainer.logger.init_args.save_dir={tmp_path}"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"error: --ckpt_path=last: no checkpoint in {tmp_path}/demo/version_*")


def _fit(tiny_model_dir: Path, runs: Path, max_steps: int, *extra: str, logger: str = TB) -> None:
    main([
        "fit", "--config", DEMO, "--prepare=null", f"--model.model_name_or_path={tiny_model_dir}",
        "--data.prompts_per_step=2", "--data.rollout.group_size=2", "--data.rollout.sampling.max_new_tokens=4",
        "--trainer.val_check_interval=null", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", f"--trainer.max_steps={max_steps}", f"--trainer.logger={logger}",
        f"--trainer.logger.init_args.save_dir={runs}", "--trainer.logger.init_args.name=demo", "--trainer.callbacks.every_n_train_steps=1",
        "--trainer.callbacks+=lightning_grpo.export.ExportHuggingFace", f"--trainer.callbacks.dirpath={runs / 'hf'}",
        *extra,
    ])


@pytest.mark.slow
def test_a_run_resumed_with_last_continues_in_its_own_folder_and_says_where_things_go(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model_dir: Path
) -> None:
    runs = tmp_path / "runs"
    _fit(tiny_model_dir, runs, 2)
    err = capsys.readouterr().err
    version = runs / "demo" / "version_0"
    assert f"run folders: logs {version}, checkpoints {version / 'checkpoints'}, exports {runs / 'hf'}" in err
    assert f"run done at step 2: logs {version}, last checkpoint {version / 'checkpoints'}" in err
    assert f"exported {runs / 'hf' / 'final'}" in err
    first_config, first_hparams = (version / "config.yaml").read_text(), (version / "hparams.yaml").read_bytes()
    _fit(tiny_model_dir, runs, 3, "--ckpt_path=last")
    err = capsys.readouterr().err
    assert f"--ckpt_path=last: resuming from {version / 'checkpoints'}" in err and f"logging into {version}" in err
    assert sorted(p.name for p in (runs / "demo").iterdir()) == ["version_0"]  # one run, not two
    assert len(list(version.glob("events.out.tfevents.*"))) == 2  # both parts log into it
    last = torch.load(version / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3  # it continued from step 2, not from scratch
    assert "run done at step 3" in err
    # the first part's config and hyperparameters stay; the resumed part's config is saved beside them
    assert (version / "config.yaml").read_text() == first_config and "max_steps: 2\n" in first_config
    assert (version / "hparams.yaml").read_bytes() == first_hparams
    resumed = (version / "config_resumed_step2.yaml").read_text()
    assert "max_steps: 3\n" in resumed and f"ckpt_path: {version / 'checkpoints'}" in resumed


@pytest.mark.slow
def test_a_csv_run_resumed_with_last_keeps_the_first_parts_metrics(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model_dir: Path
) -> None:
    runs = tmp_path / "runs"
    _fit(tiny_model_dir, runs, 2, logger=CSV)
    first = runs / "demo" / "version_0"
    metrics = (first / "metrics.csv").read_text()
    assert len(metrics.splitlines()) >= 3  # a header and a row per step
    config = (first / "config.yaml").read_text()
    capsys.readouterr()
    _fit(tiny_model_dir, runs, 3, "--ckpt_path=last", logger=CSV)
    err = capsys.readouterr().err
    second = runs / "demo" / "version_1"
    assert (first / "metrics.csv").read_text() == metrics and (first / "config.yaml").read_text() == config
    assert f"CSVLogger logging into a new version folder under {runs / 'demo'}" in err
    assert "ckpt_path: null" in config and "ckpt_path: " + str(first / "checkpoints") in (second / "config.yaml").read_text()
    assert torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
