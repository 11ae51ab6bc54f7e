"""Soak: a long GRPO run on the tiny model, with validation and checkpoints, watched for slow leaks.

Runs the demo's loop in-process (tiny Qwen3-config model with random weights; arithmetic prompts,
4 prompts x G = 8, 8 new tokens, GRPO with beta = 0.04 so the reference model is loaded; TensorBoard
logging with text samples every 20 steps; validation on 16 held-out prompts every ``--val-every``
steps; a ``PeriodicCheckpoint`` every ``--ckpt-every`` steps through ``AtomicCheckpointIO``, the
interrupt checkpoint callback armed) and every ``--every`` optimizer steps records

- resident memory (VmRSS) and peak (VmHWM),
- child processes (``/proc/<pid>/task/*/children``) and open file descriptors (``/proc/self/fd``),
- threads, and the median time of the last ``--every`` training steps (sampling + update).

After ``--warmup`` steps it reports the growth of each to the end, and passes when RSS grew by at
most ``--max-rss-growth-mib`` (50), no child process or open file accumulated, and the step time of
the last third of the run (the median of its windows' medians) is at most ``--max-drift`` (1.5) times
that of the first third after warm-up.

    OMP_NUM_THREADS=1 python tools/memory_soak.py [--steps 2000] [--every 100] [--json soak.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_grpo.callbacks import InterruptCheckpoint, PeriodicCheckpoint
from lightning_grpo.checkpoint_io import AtomicCheckpointIO
from lightning_grpo.data import RolloutDataModule, Validation
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rollout_engine import RolloutEngine
from lightning_grpo.sampling import Sampling
from lightning_grpo.demo.tiny_model import save_tiny_model
from lightning_grpo.module import GRPOModule
from lightning_grpo.module_settings import Logging, Optimization
from lightning_grpo.objectives import GRPO
from lightning_grpo.demo.arithmetic import Arithmetic


def proc_status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS: resident now; VmHWM: peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child_processes() -> int:
    """Live child processes of this process (every thread's children)."""
    count = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            count += len((task / "children").read_text().split())
        except OSError:
            pass
    return count


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    return proc_status_kib("Threads")  # (a count, not kB)


class LeakProbe(Callback):
    """Every ``every`` optimizer steps: (step, RSS MiB, peak MiB, children, open files, threads,
    median step seconds of the window, Python objects)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.rows: list[dict[str, float]] = []
        self.step_seconds: list[float] = []
        self._started = 0.0
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        self.step_seconds.append(time.perf_counter() - self._started)
        step = trainer.global_step
        if step % self.every:
            return
        gc.collect()
        row = {
            "step": step, "rss_mib": proc_status_kib("VmRSS") / 1024, "peak_mib": proc_status_kib("VmHWM") / 1024,
            "children": child_processes(), "open_files": open_files(), "threads": threads(),
            "step_s_median": statistics.median(self.step_seconds[-self.every:]), "python_objects": len(gc.get_objects()),
        }
        self.rows.append(row)
        print(f"step {step:5d}  rss {row['rss_mib']:8.1f} MiB  peak {row['peak_mib']:8.1f} MiB  children "
              f"{row['children']}  open files {row['open_files']}  threads {row['threads']}  step "
              f"{row['step_s_median'] * 1000:6.1f} ms (median)  objects {row['python_objects']}  "
              f"({time.perf_counter() - self.start:6.0f} s)", flush=True)


def summarise(rows: list[dict[str, float]], warmup: int, max_growth: float, max_drift: float) -> dict[str, Any]:
    after = [r for r in rows if r["step"] >= warmup]
    if len(after) < 2:
        return {"passed": False, "summary": f"too few probes after warm-up ({len(after)})", "rows": rows}
    first, last = after[0], after[-1]
    growth = last["rss_mib"] - first["rss_mib"]
    third = max(1, len(after) // 3)  # step time: the last third of the windows against the first (noise-robust)
    early = statistics.median(r["step_s_median"] for r in after[:third])
    late = statistics.median(r["step_s_median"] for r in after[-third:])
    drift = late / early
    report = {
        "warmup_step": first["step"], "last_step": last["step"],
        "rss_growth_mib": round(growth, 1), "rss_at_warmup_mib": round(first["rss_mib"], 1),
        "peak_mib": round(last["peak_mib"], 1),
        "children": [first["children"], last["children"]], "open_files": [first["open_files"], last["open_files"]],
        "threads": [first["threads"], last["threads"]], "step_time_ratio_last_to_first": round(drift, 3),
        "python_objects_growth": last["python_objects"] - first["python_objects"],
    }
    checks = {
        "rss": growth <= max_growth,
        "children": last["children"] <= first["children"],
        "open_files": last["open_files"] <= first["open_files"],
        "step_time": drift <= max_drift,
    }
    report["checks"] = checks
    report["passed"] = all(checks.values())
    report["summary"] = (
        f"steps {first['step']}->{last['step']}: RSS {growth:+.1f} MiB (limit {max_growth:g}), children "
        f"{first['children']}->{last['children']}, open files {first['open_files']}->{last['open_files']}, threads "
        f"{first['threads']}->{last['threads']}, step time last third / first third x{drift:.2f} (limit {max_drift:g})"
    )
    report["rows"] = rows
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=100, help="probe interval in optimizer steps")
    parser.add_argument("--warmup", type=int, default=None, help="steps before the baseline probe (default: 10%%)")
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-rss-growth-mib", type=float, default=50.0)
    parser.add_argument("--max-drift", type=float, default=1.5)
    parser.add_argument("--no-logger", action="store_true", help="run without TensorBoard logging")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(args.every, args.steps // 10 // args.every * args.every)
    torch.set_num_threads(args.threads)
    seed_everything(0, verbose=False)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(save_tiny_model(Path(tmp) / "tiny"))
        probe = LeakProbe(args.every)
        logger = False if args.no_logger else TensorBoardLogger(save_dir=tmp, name="soak")
        trainer = Trainer(
            accelerator="cpu", devices=1, max_steps=args.steps, max_epochs=-1, log_every_n_steps=1, logger=logger,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            val_check_interval=args.val_every, check_val_every_n_epoch=None, plugins=[AtomicCheckpointIO()],
            callbacks=[probe, PeriodicCheckpoint(dirpath=str(Path(tmp) / "ckpt"), every_n_train_steps=args.ckpt_every),
                       InterruptCheckpoint()],
        )
        module = GRPOModule(model_dir, objective=GRPO(), optimizer=Optimization(learning_rate=3e-5),
                            logging=Logging(log_completions_every_n_steps=20))
        data = RolloutDataModule(
            Arithmetic(max_operand=99, num_operands=2, operations="+", num_validation=16), tokenizer=model_dir,
            prompts_per_step=4,
            rollout=RolloutEngine(group_size=8, sampling=Sampling(max_new_tokens=8, temperature=1.0), rewards=[ExactInteger()]),
            validation=Validation(batch_size=16, num_samples=2),
        )
        trainer.fit(module, data)
        checkpoints = sorted(p.name for p in (Path(tmp) / "ckpt").iterdir())
    report = summarise(probe.rows, warmup, args.max_rss_growth_mib, args.max_drift)
    report.update({"steps": args.steps, "checkpoints_left": checkpoints, "seconds": round(time.perf_counter() - started),
                   "validations": args.steps // args.val_every, "command": " ".join(["python", *sys.argv])})
    print(("PASSED: " if report["passed"] else "FAILED: ") + report["summary"], flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
