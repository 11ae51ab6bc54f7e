"""Fault drill: inject the faults that end long runs into real ``lightning-grpo fit`` runs and report.

Every drill starts ``python -m lightning_grpo.cli fit`` on the tiny model (hidden 64, 2 layers, CPU,
one thread) in a subprocess, as a user would, injects one fault, and checks what a trusted trainer
must do: go on, or stop with one clear message naming the cause; the last good checkpoint loadable;
resuming from it exact (the weights one step later equal, bitwise, those of an uninterrupted
reference run). It prints one table: fault, what happened, survived (yes/no), data lost.

    python tools/fault_drill.py                    # every drill (about 10 minutes on 2 busy cores)
    python tools/fault_drill.py --only sigterm sigkill_while_saving
    python tools/fault_drill.py --kills 8          # more SIGKILLs in the killed-while-saving drill

The helpers that inject faults into the run (a reward that hangs, gradients made NaN, checkpoint
ballast that makes a save take long enough to be hit) are defined here and named in the run's
config by ``class_path: fault_drill.<name>``; the subprocess finds them through ``PYTHONPATH``.
tests/test_fault_drill.py runs each drill as a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerStatus

from lightning_grpo.rewards.base import RewardBatch, RewardFunction

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(__file__).resolve().parent


# ---- what the run's config names to inject a fault -----------------------------------------------
class Ballast(Callback):
    """Adds ``megabytes`` of zeros to every checkpoint, so that writing one takes long enough for a
    signal to land inside the write (it changes nothing that training or resuming reads); touches
    ``marker`` as a save begins (how the drill finds the moment, whatever the writer does)."""

    def __init__(self, megabytes: int = 64, marker: str | None = None) -> None:
        self.megabytes = megabytes
        self.marker = marker

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["ballast"] = torch.zeros(self.megabytes * 2**18)  # float32: 4 bytes each
        if self.marker is not None:
            Path(self.marker).write_text(str(trainer.global_step))


class _SlowToPickle:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, ...]:
        time.sleep(self.seconds)  # inside torch.save, with the temporary file open
        return (_SlowToPickle, (0.0,))


class SlowInterruptSave(Callback):
    """Makes the interrupt checkpoint's save take ``seconds`` (a big model's save), nothing else."""

    def __init__(self, seconds: float = 20.0) -> None:
        self.seconds = seconds

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            checkpoint["slow"] = _SlowToPickle(self.seconds)


class GrowCheckpointsFrom(Callback):
    """From optimizer step ``step`` on, every checkpoint carries ``megabytes`` more (to hit a file-size limit)."""

    def __init__(self, step: int, megabytes: int = 16) -> None:
        self.step, self.megabytes = step, megabytes

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.global_step >= self.step:
            checkpoint["ballast"] = torch.zeros(self.megabytes * 2**18)


class NaNGradientsFrom(Callback):
    """From optimizer step ``step`` on, every backward leaves a NaN in the first gradient."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_step >= self.step:
            for parameter in pl_module.parameters():
                if parameter.grad is not None:
                    parameter.grad.view(-1)[0] = float("nan")
                    return


class HangingReward(RewardFunction):
    """Scores 0, but its call number ``hang_on_call`` never returns (sleeps an hour)."""

    def __init__(self, name: str = "hangs", hang_on_call: int = 2, time_limit_s: float = 2.0) -> None:
        super().__init__(name=name, weight=0.0)
        self.hang_on_call = hang_on_call
        self.time_limit_s = time_limit_s
        self.calls = 0

    def score(self, batch: RewardBatch) -> list[float]:
        self.calls += 1
        if self.calls == self.hang_on_call:
            time.sleep(3600)
        return [0.0] * len(batch.completions)


class RaisingReward(RewardFunction):
    """Scores 0, but raises on every completion of its call number ``raise_on_call``."""

    def __init__(self, name: str = "raises", raise_on_call: int = 3) -> None:
        super().__init__(name=name, weight=0.0)
        self.raise_on_call = raise_on_call
        self.calls = 0
        self.failing = 0  # calls still to fail: the composer's one-completion retries of the failed call

    def score(self, batch: RewardBatch) -> list[float]:
        self.calls += 1
        if self.calls == self.raise_on_call:
            self.failing = len(batch.completions)
            raise ZeroDivisionError("a reward that fails")
        if self.failing:
            self.failing -= 1
            raise ZeroDivisionError("a reward that fails")
        return [0.0] * len(batch.completions)


# ---- running ``lightning-grpo fit`` --------------------------------------------------------------
@dataclass
class Run:
    """One ``lightning-grpo fit`` subprocess: its folder, checkpoint folder, output and exit status."""

    folder: Path
    process: subprocess.Popen | None = None
    returncode: int | None = None
    output: str = ""

    @property
    def checkpoints(self) -> Path:
        return self.folder / "ckpt"

    @property
    def log(self) -> Path:
        return self.folder / "output.txt"

    def read_output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, timeout: float = 600) -> "Run":
        assert self.process is not None
        try:
            self.returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()
        self.output = self.read_output()
        return self


@dataclass
class DrillResult:
    fault: str
    happened: str
    survived: bool
    data_lost: str
    facts: dict[str, Any] = field(default_factory=dict)  # what the tests assert on


class Drill:
    """A scratch folder with the tiny model and an uninterrupted reference run to compare resumes with."""

    REFERENCE_STEPS = 10

    def __init__(self, root: Path) -> None:
        from lightning_grpo.demo.tiny_model import save_tiny_model

        self.root = root
        self.model = root / "tiny"
        if not (self.model / "config.json").exists():
            save_tiny_model(self.model, hidden_size=64, num_layers=2, intermediate_size=128)
        self._reference: Run | None = None
        self._count = 0
        self.reference_dir = root / "reference"  # its checkpoints: reference/ckpt/step=K.ckpt

    # -- configs and processes
    def config(self, run: Path, max_steps: int, every: int | None = 1, keep: int = -1,
               callbacks: list[dict[str, Any]] | None = None, rewards: list[dict[str, Any]] | None = None,
               data: dict[str, Any] | None = None, model: dict[str, Any] | None = None,
               rollout: dict[str, Any] | None = None) -> dict[str, Any]:
        checkpoint = {"class_path": "lightning_grpo.callbacks.PeriodicCheckpoint",
                      "init_args": {"dirpath": str(run / "ckpt"), "every_n_train_steps": every, "save_top_k": keep}}
        return {
            "seed_everything": 0,
            "trainer": {
                "accelerator": "cpu", "devices": 1, "max_steps": max_steps, "max_epochs": -1, "logger": False,
                "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                "limit_val_batches": 0, "default_root_dir": str(run),
                "callbacks": [checkpoint, *(callbacks or [])],
            },
            "model": {"model_name_or_path": str(self.model), "optimizer": {"learning_rate": 1e-3},
                      "logging": {"log_completions_every_n_steps": 0}, **(model or {})},
            "data": {
                "source": {"class_path": "lightning_grpo.demo.arithmetic.Arithmetic", "init_args": {"num_train": 64}},
                "prompts_per_step": 2, "seed": 3,
                "rollout": {
                    "group_size": 4, "sampling": {"max_new_tokens": 4},
                    "rewards": rewards if rewards is not None else [{"class_path": "lightning_grpo.rewards.ExactInteger"}],
                    **(rollout or {}),
                },
                **(data or {}),
            },
        }

    def start(self, name: str, config: dict[str, Any], ckpt_path: Path | None = None,
              preexec: Callable[[], None] | None = None) -> Run:
        self._count += 1
        folder = self.root / f"{self._count:02d}-{name}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(config, indent=1))  # JSON is YAML
        command = [sys.executable, "-m", "lightning_grpo.cli", "fit", "--config", str(folder / "config.json")]
        if ckpt_path is not None:
            command.append(f"--ckpt_path={ckpt_path}")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TOOLS)]), "OMP_NUM_THREADS": "1",
               "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        log = (folder / "output.txt").open("w")
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=preexec, start_new_session=True)
        log.close()
        return Run(folder, process)

    def fit(self, name: str, config: dict[str, Any], **kwargs: Any) -> Run:
        return self.start(name, config, **kwargs).wait()

    @property
    def reference(self) -> Run:
        """An uninterrupted run of REFERENCE_STEPS steps with a checkpoint at every step."""
        if self._reference is None:
            run = self.fit("reference", self.config(self.reference_dir, self.REFERENCE_STEPS))
            if run.returncode != 0:
                raise RuntimeError(f"the reference run failed ({run.returncode}):\n{run.output[-3000:]}")
            self._reference = run
        return self._reference

    def resumes_exactly(self, checkpoint: Path, name: str) -> tuple[bool, str]:
        """Resume from ``checkpoint`` (at step K) for one step; equal weights to the reference at K+1?"""
        step = int(torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"])
        if step + 1 > self.REFERENCE_STEPS:
            return False, f"step {step} is past the reference run"
        self.reference
        reference = self.reference_dir / "ckpt" / f"step={step + 1}.ckpt"
        run = self.fit(name, self.config(self.root / name, step + 1), ckpt_path=checkpoint)
        resumed = self.root / name / "ckpt" / f"step={step + 1}.ckpt"
        if run.returncode != 0 or not resumed.exists():
            return False, f"the resume failed ({run.returncode}): {last_line(run.output)}"
        a = torch.load(reference, map_location="cpu", weights_only=False)["state_dict"]
        b = torch.load(resumed, map_location="cpu", weights_only=False)["state_dict"]
        same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        return same, f"resumed at step {step}, step {step + 1} {'equals' if same else 'DIFFERS FROM'} the uninterrupted run"


def last_matching(text: str, needle: str) -> str:
    """The last line of ``text`` that contains ``needle`` (an exception's own line, not the traceback's)."""
    return next((line for line in reversed(text.splitlines()) if needle in line), "")


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def wait_for(predicate: Callable[[], Any], timeout: float, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    return None


def checkpoints_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []


def temp_files_in(folder: Path) -> list[Path]:
    from lightning_grpo.checkpoint_io import TEMP_SUFFIX

    return [p for p in folder.glob(f".*{TEMP_SUFFIX}")] if folder.is_dir() else []


def sound(path: Path) -> bool:
    from lightning_grpo.checkpoint_io import CheckpointLoadError, verify_checkpoint_file

    try:
        verify_checkpoint_file(path)
        return True
    except (CheckpointLoadError, FileNotFoundError):
        return False


def step_of(path: Path) -> int:
    match = re.search(r"step=(\d+)", path.name)
    return int(match.group(1)) if match else -1


def newest(folder: Path) -> Path | None:
    from lightning_grpo.checkpoint_paths import newest_checkpoint

    return newest_checkpoint(folder)


# ---- the drills ----------------------------------------------------------------------------------
def drill_sigterm(d: Drill) -> DrillResult:
    """SIGTERM (a scheduler's stop) mid-run: one line, an interrupt checkpoint, exact resume."""
    run = d.start("sigterm", d.config(d.root / "sigterm", 200, every=2))
    ckpt = d.root / "sigterm" / "ckpt"
    seen = wait_for(lambda: any(step_of(p) >= 4 for p in checkpoints_in(ckpt)), 300)
    os.kill(run.process.pid, signal.SIGTERM)
    run.wait(300)
    lines = [line for line in run.output.splitlines() if line.startswith("SIGTERM: saving")]
    saved = sorted(ckpt.glob("interrupted-step=*.ckpt"))
    facts: dict[str, Any] = {"returncode": run.returncode, "saving_lines": lines, "saved": [p.name for p in saved],
                             "traceback": "Traceback" in run.output, "reached_step_4": bool(seen)}
    exact, how = (False, "no interrupt checkpoint")
    if saved and sound(saved[-1]):
        exact, how = d.resumes_exactly(saved[-1], "sigterm-resume")
    facts["resumed_exactly"] = exact
    survived = bool(seen) and len(lines) == 1 and "(signal again to abort)" in lines[0] and bool(saved) and exact
    happened = f"{lines[0] if lines else 'no saving line'}; exit {run.returncode}; {how}"
    return DrillResult("SIGTERM mid-run (scheduler)", happened, survived,
                       "none (interrupt checkpoint at the last finished step)" if survived else "?", facts)


def drill_second_signal_during_save(d: Drill) -> DrillResult:
    """SIGTERM, then Ctrl-C while the interrupt checkpoint is written (slowed to 20 s)."""
    slow = {"class_path": "fault_drill.SlowInterruptSave", "init_args": {"seconds": 20.0}}
    config = d.config(d.root / "second", 200, every=2, keep=1, callbacks=[slow])
    run = d.start("second-signal", config)
    ckpt = d.root / "second" / "ckpt"
    wait_for(lambda: any(step_of(p) >= 2 for p in checkpoints_in(ckpt)), 300)
    os.kill(run.process.pid, signal.SIGTERM)
    began = wait_for(lambda: "(signal again to abort)" in run.read_output(), 120)
    time.sleep(0.5)
    os.kill(run.process.pid, signal.SIGINT)
    run.wait(120)
    abandoned = [line for line in run.output.splitlines() if "during the save: abandoned" in line]
    left = checkpoints_in(ckpt)
    periodic = [p for p in left if p.name.startswith("step=")]
    facts = {"returncode": run.returncode, "began": bool(began), "abandoned_lines": abandoned,
             "traceback": "Traceback" in run.output, "left": [p.name for p in left],
             "temp_files": [p.name for p in temp_files_in(ckpt)],
             "periodic_sound": bool(periodic) and all(sound(p) for p in periodic)}
    survived = (bool(began) and len(abandoned) == 1 and not facts["traceback"] and facts["periodic_sound"]
                and not any(p.name.startswith("interrupted") for p in left) and not facts["temp_files"])
    happened = (abandoned[0] if abandoned else f"no 'abandoned' line; exit {run.returncode}: {last_line(run.output)}")
    lost = f"steps after {periodic[-1].name} (the save was abandoned on request)" if periodic else "?"
    return DrillResult("Ctrl-C during the SIGTERM save", happened, survived, lost, facts)


def drill_sigkill_while_saving(d: Drill, kills: int = 4, seed: int = 0) -> DrillResult:
    """SIGKILL at random moments inside checkpoint writes, ``kills`` times; each restart resumes from the
    newest complete checkpoint; no temporary file is ever taken for one; the last resume is exact."""
    rng = random.Random(seed)
    ckpt = d.root / "killed" / "ckpt"
    marker = d.root / "killed" / "save-began"
    ballast = {"class_path": "fault_drill.Ballast", "init_args": {"megabytes": 48, "marker": str(marker)}}
    config = d.config(d.root / "killed", d.REFERENCE_STEPS - 1, every=1, keep=2, callbacks=[ballast])
    hits, resumed_from, unsound = 0, [], []
    for attempt in range(kills):
        start = newest(ckpt)
        resumed_from.append(start.name if start else None)
        marker.unlink(missing_ok=True)
        run = d.start(f"kill-{attempt}", config, ckpt_path=start)
        for _ in range(rng.choice([1, 2])):  # kill inside the first or the second save of this attempt
            marker.unlink(missing_ok=True)
            wait_for(lambda: marker.exists() or run.process.poll() is not None, 300, poll=0.002)
        if run.process.poll() is not None:
            raise RuntimeError(f"the run ended before it was killed:\n{run.read_output()[-3000:]}")
        time.sleep(rng.uniform(0.0, 0.25))
        hits += bool(temp_files_in(ckpt))  # a temporary file being written when the kill lands
        os.killpg(run.process.pid, signal.SIGKILL)
        run.wait(60)
        unsound += [p.name for p in checkpoints_in(ckpt) if not sound(p)]
    final = newest(ckpt)
    exact, how = (False, "no checkpoint") if final is None else d.resumes_exactly(final, "killed-resume")
    facts = {"kills": kills, "kills_mid_write": hits, "resumed_from": resumed_from, "unsound": unsound,
             "final": final.name if final else None, "resumed_exactly": exact}
    survived = not unsound and final is not None and exact
    happened = (f"{kills} SIGKILLs ({hits} while a temporary file was being written); every *.ckpt left sound; "
                f"newest {final.name if final else None}: {how}")
    return DrillResult("SIGKILL while saving (repeated)", happened, survived,
                       "the steps after the newest complete checkpoint" if survived else "?", facts)


def drill_disk_full(d: Drill) -> DrillResult:
    """A file-size limit (RLIMIT_FSIZE) that the step-3 checkpoint exceeds: the write fails with an
    error naming the file and the free space; the step-2 checkpoint stays sound and resumes."""
    d.reference
    reference = d.reference_dir / "ckpt" / "step=1.ckpt"
    limit = int(reference.stat().st_size * 1.5) + (1 << 16)
    grow = {"class_path": "fault_drill.GrowCheckpointsFrom", "init_args": {"step": 3, "megabytes": 16}}
    config = d.config(d.root / "full", 6, every=1, keep=-1, callbacks=[grow])

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer; now write() fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = d.fit("disk-full", config, preexec=limit_file_size)
    ckpt = d.root / "full" / "ckpt"
    message = last_matching(run.output, "cannot write checkpoint")
    left = checkpoints_in(ckpt)
    facts = {"returncode": run.returncode, "message": message, "left": [p.name for p in left],
             "temp_files": [p.name for p in temp_files_in(ckpt)], "all_sound": all(sound(p) for p in left)}
    exact, how = (False, "nothing left")
    if left:
        exact, how = d.resumes_exactly(left[-1], "full-resume")
    facts["resumed_exactly"] = exact
    survived = (run.returncode != 0 and "step=3.ckpt" in message and "MiB free" in message and facts["all_sound"]
                and not facts["temp_files"] and [p.name for p in left] == ["step=1.ckpt", "step=2.ckpt"] and exact)
    return DrillResult("Disk full while saving (file-size limit)", message.strip()[:200] or last_line(run.output),
                       survived, "steps after step 2 (the run stopped)" if survived else "?", facts)


def drill_sharded_checkpoint(d: Drill) -> DrillResult:
    """A torch.distributed.checkpoint folder (one process) with a manifest, then a shard damaged,
    truncated or removed: `fit --ckpt_path FOLDER` refuses it naming the file, before training."""
    from lightning_grpo.checkpoint_io import write_folder_manifest

    outcomes: dict[str, str] = {}
    for damage in ("flipped byte", "truncated", "missing"):
        folder = d.root / f"sharded-{damage.replace(' ', '-')}"
        write_sharded_checkpoint(folder)
        write_folder_manifest(folder)
        shard = damage_shard(folder, damage)
        run = d.fit(f"sharded-{damage.replace(' ', '-')}", d.config(d.root / "sharded-run", 2), ckpt_path=folder)
        message = last_matching(run.output, "CheckpointLoadError: ")
        outcomes[damage] = message
        outcomes[damage + " names the file"] = str(shard in message and run.returncode != 0)
    survived = all(outcomes[k + " names the file"] == "True" for k in ("flipped byte", "truncated", "missing"))
    happened = "; ".join(f"{k}: refused naming {Path(v.split(chr(39))[1]).name if chr(39) in v else '?'}"
                         for k, v in outcomes.items() if not k.endswith("file"))
    happened += f" (e.g. {outcomes['flipped byte'].split('CheckpointLoadError: ')[-1][:90]}...)"
    return DrillResult("Sharded (DCP) checkpoint damaged/truncated/missing", happened, survived,
                       "none (refused before any weight was loaded)", outcomes)


def write_sharded_checkpoint(folder: Path) -> None:
    """A one-process torch.distributed.checkpoint folder with a model's state and Lightning's meta.pt."""
    import warnings

    import torch.distributed.checkpoint as dcp

    folder.mkdir(parents=True, exist_ok=True)
    state = {"state_dict": {f"layer{i}.weight": torch.randn(64, 64) for i in range(4)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save(state, checkpoint_id=str(folder))
    torch.save({"global_step": 1, "epoch": 0}, folder / "meta.pt")


def damage_shard(folder: Path, damage: str) -> str:
    shard = sorted(folder.glob("*.distcp"))[0]
    data = bytearray(shard.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    elif damage == "truncated":
        shard.write_bytes(bytes(data[: len(data) // 2]))
    else:
        shard.unlink()
    return str(shard)


def drill_nonfinite(d: Drill) -> DrillResult:
    """Every update from step 3 on has a NaN gradient: skipped, and after max_consecutive_skips=3 in a
    row the run stops saying so and naming the last good checkpoint."""
    nan = {"class_path": "fault_drill.NaNGradientsFrom", "init_args": {"step": 3}}
    config = d.config(d.root / "nan", 50, every=1, keep=1, callbacks=[nan], model={"update": {"max_consecutive_skips": 3}})
    run = d.fit("nonfinite", config)
    message = last_matching(run.output, "updates in a row")
    good = d.root / "nan" / "ckpt" / "step=3.ckpt"
    facts = {"returncode": run.returncode, "message": message, "good_sound": good.exists() and sound(good)}
    survived = run.returncode != 0 and "3 updates in a row" in message and str(good) in message and facts["good_sound"]
    return DrillResult("Non-finite updates that do not stop", message.strip()[:200] or last_line(run.output), survived,
                       "none (skipped updates changed no weight)" if survived else "?", facts)


def drill_reward_faults(d: Drill) -> DrillResult:
    """A reward that hangs (limit 2 s) and one that raises, with reward_on_error=zero: the run goes on
    to its last step, each failure scored 0 and counted."""
    rewards = [
        {"class_path": "lightning_grpo.rewards.ExactInteger"},
        {"class_path": "fault_drill.HangingReward", "init_args": {"hang_on_call": 2, "time_limit_s": 2.0}},
        {"class_path": "fault_drill.RaisingReward", "init_args": {"raise_on_call": 3}},
    ]
    config = d.config(d.root / "rewards", 4, every=4, keep=1, rewards=rewards, rollout={"reward_on_error": "zero"})
    config["trainer"]["log_every_n_steps"] = 1
    config["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                   "init_args": {"save_dir": str(d.root / "rewards"), "name": "log"}}
    run = d.fit("reward-faults", config)
    metrics = list((d.root / "rewards" / "log").rglob("metrics.csv"))
    totals: dict[str, float] = {}
    if metrics:
        import csv

        for row in csv.DictReader(metrics[0].open()):
            for key in ("reward/hangs_errors_total", "reward/raises_errors_total"):
                if row.get(key):
                    totals[key] = max(totals.get(key, 0.0), float(row[key]))
    finished = (d.root / "rewards" / "ckpt" / "step=4.ckpt").exists()
    facts = {"returncode": run.returncode, "finished": finished, "error_totals": totals}
    survived = run.returncode == 0 and finished and totals.get("reward/hangs_errors_total", 0) == 8 and \
        totals.get("reward/raises_errors_total", 0) == 8
    happened = (f"exit {run.returncode}, reached step 4; scored 0 and counted: hung call "
                f"{totals.get('reward/hangs_errors_total')} completions, raised {totals.get('reward/raises_errors_total')}")
    return DrillResult("Reward hangs / raises", happened, survived,
                       "those completions' reward (scored 0, counted)" if survived else "?", facts)


def drill_bad_rows(d: Drill) -> DrillResult:
    """Bad rows in the training file (an empty answer) and in the held-out file (bytes not UTF-8):
    the run stops at load time naming file, row and line."""
    data_dir = d.root / "bad-data"
    data_dir.mkdir(exist_ok=True)
    good = [{"problem": f"{i}+1=", "answer": str(i + 1)} for i in range(8)]
    train = data_dir / "train.jsonl"
    rows = good[:3] + [{"problem": "5+5=", "answer": ""}] + good[3:]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    held_out = data_dir / "held_out.jsonl"
    held_out.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in good[:2]) + b'{"problem": "caf\xe9", "answer": "1"}\n')
    clean = data_dir / "clean.jsonl"
    clean.write_text("".join(json.dumps(r) + "\n" for r in good))
    messages = {}
    for name, train_path, val_path in (("train", train, clean), ("held-out", clean, held_out)):
        # The held-out set named as data.validation.source (the source's own validation split follows the
        # same policy: tests/test_config_errors.py).
        source = {"class_path": "lightning_grpo.sources.JsonlProblems", "init_args": {"train_path": str(train_path)}}
        val_source = {"class_path": "lightning_grpo.sources.JsonlProblems",
                      "init_args": {"train_path": str(clean), "validation_path": str(val_path)}}
        config = d.config(d.root / f"bad-{name}", 2, data={"source": source, "validation": {"source": val_source}})
        run = d.fit(f"bad-rows-{name}", config)
        messages[name] = last_matching(run.output, "dataset '")  # "error: dataset ..." (BadRowError), or the reader's ValueError
        messages[name + " exit"] = run.returncode
    survived = ("train.jsonl', row 4 (line 4): the field 'answer' is empty" in messages["train"]
                and "held_out.jsonl" in messages["held-out"] and "line 3" in messages["held-out"])
    happened = " | ".join(m[m.find("dataset"):][:120] for k, m in messages.items() if isinstance(m, str))
    return DrillResult("Bad rows (empty answer; not UTF-8)", happened, survived,
                       "none (stopped at load, before training)" if survived else "?", messages)


def drill_soak(d: Drill, steps: int = 300) -> DrillResult:
    """tools/memory_soak.py for ``steps`` steps (the full soak is 2,000+, run on its own)."""
    command = [sys.executable, str(TOOLS / "memory_soak.py"), "--steps", str(steps), "--json", str(d.root / "soak.json")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    report = json.loads((d.root / "soak.json").read_text()) if (d.root / "soak.json").exists() else {}
    survived = result.returncode == 0 and bool(report.get("passed"))
    happened = report.get("summary", last_line(result.stdout + result.stderr))
    return DrillResult(f"Slow leaks ({steps}-step soak)", happened, survived, "n/a", report)


DRILLS: dict[str, Callable[..., DrillResult]] = {
    "sigterm": drill_sigterm,
    "second_signal": drill_second_signal_during_save,
    "sigkill_while_saving": drill_sigkill_while_saving,
    "disk_full": drill_disk_full,
    "sharded": drill_sharded_checkpoint,
    "nonfinite": drill_nonfinite,
    "reward_faults": drill_reward_faults,
    "bad_rows": drill_bad_rows,
    "soak": drill_soak,
}


def table(results: list[DrillResult], root: Path | None = None) -> str:
    """The drills as one Markdown table (the scratch folder written as ``$DRILL``)."""
    header = ("fault", "what happened", "survived", "data lost")

    def text(s: str) -> str:
        return (s.replace(str(root), "$DRILL") if root is not None else s).replace("|", "/")

    rows = [(r.fault, text(r.happened), "yes" if r.survived else "NO", r.data_lost) for r in results]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(DRILLS), help="run only these drills")
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs in the killed-while-saving drill")
    parser.add_argument("--soak-steps", type=int, default=300)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    names = args.only or list(DRILLS)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        drill = Drill(root)
        results = []
        for name in names:
            started = time.monotonic()
            if name == "sigkill_while_saving":
                result = DRILLS[name](drill, kills=args.kills)
            elif name == "soak":
                result = DRILLS[name](drill, steps=args.soak_steps)
            else:
                result = DRILLS[name](drill)
            results.append(result)
            print(f"[{name}: {'survived' if result.survived else 'FAILED'} in {time.monotonic() - started:.0f} s] "
                  f"{result.happened}", file=sys.stderr, flush=True)
        print(table(results, root))
    sys.exit(0 if all(r.survived for r in results) else 1)


if __name__ == "__main__":
    main()
