"""The fault drill: each fault that ends long runs, injected, and the protection that survives it.

Fast tests check each protection in-process (a reward that hangs, non-finite updates that do not
stop, bad rows, the default periodic checkpoint). The slow ones run each drill of
``tools/fault_drill.py`` on real ``lightning-grpo fit`` subprocesses, as a user would meet the fault
(``pytest -m slow tests/test_fault_drill.py``, about 8 minutes on two busy cores).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_grpo.callbacks import InterruptCheckpoint, PeriodicCheckpoint, default_callbacks
from lightning_grpo.objectives import GRPO
from lightning_grpo.rewards import ExactInteger, RewardBatch, RewardComposer, RewardError, RewardFunction
from lightning_grpo.rewards import base as reward_base
from lightning_grpo.demo.arithmetic import Arithmetic
from lightning_grpo.sources import JsonlProblems
from tests.builders import make_data, make_module

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import fault_drill  # noqa: E402
import memory_soak  # noqa: E402


# ---- a reward that hangs -------------------------------------------------------------------------
class Hangs(RewardFunction):
    """Blocks until ``release`` is set (at most 20 s) on the calls listed in ``hang_on``."""

    def __init__(self, release: threading.Event, hang_on: set[int], time_limit_s: float | None = 0.2) -> None:
        super().__init__(name="hangs")
        self.release, self.hang_on, self.time_limit_s, self.calls = release, hang_on, time_limit_s, 0

    def score(self, batch: RewardBatch) -> list[float]:
        self.calls += 1
        if self.calls in self.hang_on:
            self.release.wait(20)
        return [0.5] * len(batch.completions)


def _batch(n: int = 4) -> RewardBatch:
    return RewardBatch(prompts=["1+1="] * n, completions=["2", "3", "2", "x"][:n], golds=["2"] * n,
                       completion_ids=[f"p0/{i}" for i in range(n)], group_ids=[0] * n, lengths=[1] * n, truncated=[False] * n)


@pytest.fixture
def release() -> Any:
    event = threading.Event()
    yield event
    event.set()  # let abandoned calls finish


def test_a_hanging_reward_is_scored_as_an_error_within_its_time_limit(release: threading.Event) -> None:
    hangs = Hangs(release, hang_on={1})
    composer = RewardComposer([ExactInteger(), hangs], on_error="zero")
    total, parts = composer(_batch())
    assert parts["hangs"] == [0.0, 0.0, 0.0, 0.0]  # the hung call's completions: scored 0 (not 0.5)
    assert parts["correct"] == [1.0, 0.0, 1.0, 0.0] and total == [1.0, 0.0, 1.0, 0.0]  # others unaffected
    assert composer.last_error_counts["hangs"] == 4 and composer.timeout_counts["hangs"] == 1
    assert composer(_batch())[1]["hangs"] == [0.5] * 4  # the next call, not hanging, scores again
    assert composer.error_counts["hangs"] == 4 and composer.last_error_counts["hangs"] == 0


def test_a_hanging_reward_stops_the_run_naming_it_under_raise(release: threading.Event) -> None:
    composer = RewardComposer([Hangs(release, hang_on={1})], on_error="raise")
    with pytest.raises(RewardError, match=r"reward 'hangs' \(Hangs\) hung: no result within its time limit of 0.2 s "
                                          r"on a call on 4 completion\(s\), the first 'p0/0'"):
        composer(_batch())


def test_the_composer_limit_applies_to_any_reward_and_hung_calls_cannot_pile_up(release: threading.Event) -> None:
    hangs = Hangs(release, hang_on=set(range(1, 100)), time_limit_s=None)  # no limit of its own
    composer = RewardComposer([hangs], on_error="zero", time_limit_s=0.1)
    for _ in range(reward_base.MAX_ABANDONED_CALLS):
        assert composer(_batch())[0] == [0.0] * 4
    with pytest.raises(RewardError, match=rf"{reward_base.MAX_ABANDONED_CALLS + 1} timed-out calls are still running, the most allowed is {reward_base.MAX_ABANDONED_CALLS}"):
        composer(_batch())


def test_an_exception_inside_the_time_limited_call_is_still_bisected_to_the_completion() -> None:
    class FailsOnX(RewardFunction):
        def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
            return 1.0 / (completion != "x")

    composer = RewardComposer([FailsOnX("fails")], on_error="zero")
    assert composer(_batch())[1]["fails"] == [1.0, 1.0, 1.0, 0.0]
    assert composer.last_error_counts["fails"] == 1 and composer.timeout_counts["fails"] == 0
    with pytest.raises(RewardError, match="raised on completion 'p0/3'"):
        RewardComposer([FailsOnX("fails")])(_batch())


# ---- non-finite updates that do not stop -----------------------------------------------------------
@pytest.mark.slow
def test_consecutive_skipped_updates_stop_the_run_naming_the_last_good_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    seed_everything(0, verbose=False)
    checkpoint = PeriodicCheckpoint(dirpath=str(tmp_path / "ckpt"), every_n_train_steps=1)
    trainer = Trainer(accelerator="cpu", max_steps=20, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[checkpoint, fault_drill.NaNGradientsFrom(step=2)], limit_val_batches=0,
                      max_time="00:00:02:00")  # a guard: without the limit, skipped updates never reach max_steps
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0), learning_rate=1e-3, max_consecutive_skips=3,
                        log_completions_every_n_steps=0)
    data = make_data(Arithmetic(num_train=12), tokenizer=str(tiny_model_dir), prompts_per_step=2, group_size=4,
                             max_new_tokens=4)
    good = tmp_path / "ckpt" / "step=2.ckpt"
    with pytest.raises(FloatingPointError, match=rf"^3 updates in a row had a non-finite gradient norm and were skipped "
                       rf"\(max_consecutive_skips=3, at step 2\).*The last good checkpoint is {good};"):
        trainer.fit(module, data)
    assert module.skipped_updates == 3 and trainer.global_step == 2


@pytest.mark.parametrize("limit", [0, 3])
def test_the_skip_limit_counts_only_consecutive_skips_and_zero_turns_it_off(limit: int, tiny_model_dir: Path) -> None:
    import torch

    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0), max_consecutive_skips=limit)
    module.configure_model()
    optimizer = torch.optim.AdamW(module.policy.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def step(finite: bool) -> None:
        for parameter in module.policy.parameters():
            parameter.grad = torch.full_like(parameter, 1e-3 if finite else float("nan"))
        module._clip_and_step(optimizer, scheduler)

    for finite in [False, False, True, False, False, True]:  # never 3 in a row
        step(finite)
    assert module.skipped_updates == 4 and module.consecutive_skips == 0
    if limit == 0:
        for _ in range(25):
            step(False)
        assert module.skipped_updates == 29
    else:
        step(False)
        step(False)
        with pytest.raises(FloatingPointError, match="^3 updates in a row.*This run has saved no checkpoint yet"):
            step(False)


# ---- periodic checkpoints by default -----------------------------------------------------------------
def test_every_run_gets_a_periodic_checkpoint_unless_its_config_has_one_or_turns_checkpoints_off() -> None:
    added = default_callbacks([], {})
    periodic = [c for c in added if isinstance(c, PeriodicCheckpoint)]
    assert len(periodic) == 1 and any(isinstance(c, InterruptCheckpoint) for c in added)
    assert periodic[0]._train_time_interval.total_seconds() == 30 * 60 and periodic[0]._every_n_train_steps == 0
    assert periodic[0].save_top_k == 1
    configured = ModelCheckpoint(every_n_train_steps=5)
    assert not any(isinstance(c, ModelCheckpoint) for c in default_callbacks([configured], {}))
    assert not any(isinstance(c, (ModelCheckpoint, InterruptCheckpoint))
                   for c in default_callbacks([], {"enable_checkpointing": False}))
    by_steps = PeriodicCheckpoint(every_n_train_steps=50)
    assert by_steps._every_n_train_steps == 50 and by_steps._train_time_interval is None


@pytest.mark.slow
def test_the_periodic_checkpoint_keeps_the_newest_and_saves_at_the_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    seed_everything(0, verbose=False)
    checkpoint = PeriodicCheckpoint(dirpath=str(tmp_path), every_n_train_steps=2, save_top_k=2)
    trainer = Trainer(accelerator="cpu", max_steps=5, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[checkpoint], limit_val_batches=0)
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0), log_completions_every_n_steps=0)
    data = make_data(Arithmetic(num_train=12), tokenizer=str(tiny_model_dir), prompts_per_step=2, group_size=4,
                             max_new_tokens=2)
    trainer.fit(module, data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step=4.ckpt", "step=5.ckpt"]  # step 2 removed; 5: the end


# ---- bad rows: one policy for training and held-out data ---------------------------------------------
@pytest.mark.parametrize("split", ["train", "validation"])
@pytest.mark.parametrize(
    "bad_line, why",
    [
        (b'{"problem": "", "answer": "2"}', r"the field 'problem' is empty"),
        (b'{"problem": "1+1=", "answer": null}', r"the field 'answer' is missing \(null\)"),
        (b'{"problem": "1+1="}', r"the field 'answer' is missing \(null\)"),
        (b'{"problem": "1+1=", "answer": "  "}', r"the field 'answer' is empty"),
        (b'{"problem": "caf\xe9", "answer": "1"}', r"not UTF-8 text"),
    ],
)
def test_a_bad_row_stops_the_load_naming_file_row_and_line(split: str, bad_line: bytes, why: str, tmp_path: Path) -> None:
    good = [json.dumps({"problem": f"{i}+1=", "answer": str(i + 1)}).encode() for i in range(3)]
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join([good[0], b"", good[1], bad_line, good[2]]) + b"\n")  # a blank line 2: row 3 is line 4
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"\n".join(good) + b"\n")
    source = JsonlProblems(train_path=str(path if split == "train" else clean), validation_path=str(path))
    with pytest.raises(ValueError, match=rf"dataset '{path}'.*(row 3 \(line 4\): {why}|line 4, byte \d+: not UTF-8 text)"):
        source.load(split)


# ---- the soak, short -----------------------------------------------------------------------------
def test_a_short_soak_accumulates_no_child_processes_or_open_files(tmp_path: Path) -> None:
    report = memory_soak.main(["--steps", "40", "--every", "20", "--warmup", "20", "--val-every", "30",
                               "--ckpt-every", "20", "--no-logger", "--max-drift", "1000"])
    assert report["children"][1] <= report["children"][0] and report["open_files"][1] <= report["open_files"][0]
    assert report["rss_growth_mib"] <= 50
    assert report["checkpoints_left"] == ["step=40.ckpt"]
    assert [r["step"] for r in report["rows"]] == [20, 40]


# ---- the drills: real `lightning-grpo fit` subprocesses ----------------------------------------------
@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> fault_drill.Drill:
    return fault_drill.Drill(tmp_path_factory.mktemp("drill"))


@pytest.mark.slow
def test_drill_sigterm(drill: fault_drill.Drill) -> None:
    result = fault_drill.drill_sigterm(drill)
    assert result.facts["returncode"] == 1 and not result.facts["traceback"]
    assert len(result.facts["saving_lines"]) == 1 and result.facts["saving_lines"][0].endswith("(signal again to abort)")
    assert result.facts["resumed_exactly"] and result.survived


@pytest.mark.slow
def test_drill_second_signal_during_the_save(drill: fault_drill.Drill) -> None:
    result = fault_drill.drill_second_signal_during_save(drill)
    assert result.facts["began"] and len(result.facts["abandoned_lines"]) == 1 and not result.facts["traceback"]
    assert result.facts["periodic_sound"] and result.facts["temp_files"] == []
    assert not any(name.startswith("interrupted") for name in result.facts["left"]) and result.survived


@pytest.mark.slow
def test_drill_sigkill_while_saving(drill: fault_drill.Drill) -> None:
    result = fault_drill.drill_sigkill_while_saving(drill, kills=3)
    assert result.facts["unsound"] == [] and result.facts["final"] is not None
    assert result.facts["resumed_exactly"] and result.survived


@pytest.mark.slow
def test_drill_disk_full(drill: fault_drill.Drill) -> None:
    result = fault_drill.drill_disk_full(drill)
    assert "cannot write checkpoint" in result.facts["message"] and "step=3.ckpt" in result.facts["message"]
    assert "MiB free" in result.facts["message"] and result.facts["left"] == ["step=1.ckpt", "step=2.ckpt"]
    assert result.facts["all_sound"] and result.facts["resumed_exactly"] and result.survived


@pytest.mark.slow
def test_drill_sharded_checkpoint(drill: fault_drill.Drill) -> None:
    result = fault_drill.drill_sharded_checkpoint(drill)
    for damage in ("flipped byte", "truncated", "missing"):
        assert result.facts[damage + " names the file"] == "True", result.facts[damage]
    assert result.survived


@pytest.mark.slow
def test_drill_nonfinite(drill: fault_drill.Drill) -> None:
    result = fault_drill.drill_nonfinite(drill)
    assert result.facts["returncode"] != 0 and "3 updates in a row" in result.facts["message"]
    assert result.facts["good_sound"] and result.survived


@pytest.mark.slow
def test_drill_reward_faults(drill: fault_drill.Drill) -> None:
    result = fault_drill.drill_reward_faults(drill)
    assert result.facts["returncode"] == 0 and result.facts["finished"]
    assert result.facts["error_totals"]["reward/hangs_errors_total"] == 8  # the hung call's 2 x 4 completions
    assert result.facts["error_totals"]["reward/raises_errors_total"] == 8 and result.survived  # each retried alone


@pytest.mark.slow
def test_drill_bad_rows(drill: fault_drill.Drill) -> None:
    result = fault_drill.drill_bad_rows(drill)
    assert result.facts["train exit"] != 0 and result.facts["held-out exit"] != 0
    assert result.survived, result.facts
