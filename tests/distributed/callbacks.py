"""Callbacks the distributed tests add to CLI runs (``--trainer.callbacks+=tests.distributed.callbacks.X``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch import Callback, Trainer


class RolloutDump(Callback):
    """Writes every rank's first rollout (prompts, completion ids, lengths) to ``path`` (JSON, rank 0)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.done = False

    def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.done:
            return
        self.done = True
        mine = {
            "rank": trainer.global_rank,
            "strategy": type(trainer.strategy).__name__,
            "sharded": any(type(p).__name__ == "DTensor" for p in pl_module.policy.parameters()),
            "prompts": list(batch.prompts),
            "completion_ids": batch.completion_ids.tolist(),
            "lengths": batch.lengths.tolist(),
        }
        everyone = [mine]
        if dist.is_available() and dist.is_initialized():
            everyone = [None] * dist.get_world_size()
            dist.all_gather_object(everyone, mine)
        if trainer.global_rank == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(everyone))
