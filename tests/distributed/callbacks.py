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


class ValidationDump(Callback):
    """Writes the validation metrics (``val/*``) and each rank's evaluated prompt ids to ``path`` (rank 0)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.prompt_ids: list[str] = []

    def on_validation_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.prompt_ids += list(batch.prompt_ids)

    def on_validation_end(self, trainer: Trainer, pl_module: Any) -> None:
        everyone = [self.prompt_ids]
        if dist.is_available() and dist.is_initialized():
            everyone = [None] * dist.get_world_size()
            dist.all_gather_object(everyone, self.prompt_ids)
        if trainer.global_rank == 0:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            self.path.write_text(json.dumps({"metrics": metrics, "prompt_ids_per_rank": everyone}))
