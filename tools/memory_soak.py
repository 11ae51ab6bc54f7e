"""Memory soak: run the demo's GRPO loop for N steps in-process and watch resident memory.

Builds the demo setting of ``configs/demo.yaml`` directly (tiny Qwen3-config model, random weights,
no warm start; arithmetic prompts, 4 prompts × G = 8, 8 new tokens, GRPO with β = 0.04 so the
reference model is loaded, TensorBoard logging with text samples every 20 steps) and prints the
resident set size (VmRSS) every ``--every`` steps, then the growth from step ``--every`` to the end.
A leak (a graph, a rollout or a logged tensor kept per step) shows as steady growth; allocator noise
and TensorBoard's buffered events stay within a few MiB.

    python tools/memory_soak.py [--steps 200] [--every 20] [--threads 2] [--no-logger]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_grpo.data import RolloutDataModule
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


class MemoryProbe(Callback):
    """Records (batch index, VmRSS MiB, VmHWM MiB, live Python objects) every ``every`` batches."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.rows: list[tuple[int, float, float, int]] = []
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        step = batch_idx + 1
        if step % self.every:
            return
        row = (step, proc_status_kib("VmRSS") / 1024, proc_status_kib("VmHWM") / 1024, len(gc.get_objects()))
        self.rows.append(row)
        elapsed = time.perf_counter() - self.start
        print(f"step {row[0]:5d}  rss {row[1]:8.1f} MiB  peak {row[2]:8.1f} MiB  python objects {row[3]:8d}  "
              f"({elapsed:6.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-logger", action="store_true", help="run without TensorBoard logging")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(save_tiny_model(Path(tmp) / "tiny"))
        probe = MemoryProbe(args.every)
        logger = False if args.no_logger else TensorBoardLogger(save_dir=tmp, name="soak")
        trainer = Trainer(
            accelerator="cpu", devices=1, max_steps=args.steps, max_epochs=-1, log_every_n_steps=1,
            logger=logger, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[probe],
        )
        module = GRPOModule(model_dir, objective=GRPO(), optimizer=Optimization(learning_rate=3e-5),
                            logging=Logging(log_completions_every_n_steps=20))
        data = RolloutDataModule(
            Arithmetic(max_operand=99, num_operands=2, operations="+"), tokenizer=model_dir, prompts_per_step=4,
            rollout=RolloutEngine(group_size=8, sampling=Sampling(max_new_tokens=8, temperature=1.0)),
        )
        trainer.fit(module, data)
    if len(probe.rows) >= 2:
        (s0, r0, _, o0), (s1, r1, h1, o1) = probe.rows[0], probe.rows[-1]
        per_100 = (r1 - r0) / (s1 - s0) * 100
        print(f"growth step {s0} -> {s1}: {r1 - r0:+.1f} MiB RSS ({per_100:+.2f} MiB per 100 steps), "
              f"{o1 - o0:+d} Python objects; peak RSS {h1:.1f} MiB")


if __name__ == "__main__":
    main()
