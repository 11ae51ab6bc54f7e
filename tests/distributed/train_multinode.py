"""``train_fixed.py`` on several "nodes": the same fixed global batches, with ``Trainer(num_nodes=N)``.

    NODE_RANK=i MASTER_ADDR=127.0.0.1 MASTER_PORT=P python tests/distributed/train_multinode.py \
        --num_nodes N --model DIR --out DIR --strategy {ddp,fsdp2} --devices 1 [--max_steps S]

Start one such process per node (each with its own ``NODE_RANK``): Lightning's own cluster
environment then joins them into one process group of N x devices ranks over ``MASTER_ADDR:MASTER_PORT``
(gloo on CPU), exactly as on machines that are really apart. Under ``torchrun --nnodes N`` the same
script runs in TorchElastic's environment instead. Everything else (model, objective, rollouts,
optimizer, outputs) is ``train_fixed.py``'s: this script only adds ``num_nodes`` to its ``Trainer`` and
a callback that writes each rank's view of the layout to ``OUT/rank<global rank>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, Trainer

import train_fixed  # this folder is on sys.path when a script in it runs


class LayoutRecorder(Callback):
    """Writes which node, local and global rank this process was, and the cluster environment used."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        info = {
            "node_rank": trainer.node_rank,
            "local_rank": trainer.local_rank,
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "num_nodes": trainer.num_nodes,
            "environment": type(trainer.strategy.cluster_environment).__name__,
            "strategy": type(trainer.strategy).__name__,
            "pid": os.getpid(),
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(info))


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--num_nodes", type=int, required=True)
    parser.add_argument("--out", required=True)
    known, rest = parser.parse_known_args()
    out = Path(known.out)

    def trainer_on_nodes(*args: Any, callbacks: list[Callback] | None = None, **kwargs: Any) -> Trainer:
        return Trainer(*args, num_nodes=known.num_nodes, callbacks=[*(callbacks or []), LayoutRecorder(out)], **kwargs)

    train_fixed.Trainer = trainer_on_nodes  # type: ignore[assignment]
    sys.argv = [sys.argv[0], "--out", str(out), *rest]
    train_fixed.main()


if __name__ == "__main__":
    main()
