"""The order in which prompts are drawn for training: per-rank batches that resume exactly.

Global batch k of a data epoch e is a slice of one permutation of the training table, drawn from
``seed + e``; rank r of W takes the r-th of its W equal parts. So the global batch depends on
(seed, k) alone, never on the number of ranks, every prompt of a data epoch is seen once before any
is repeated, and ranks never share a prompt within a batch.

:class:`PromptStream` is an endless ``IterableDataset``: it starts at the batch the data module says
is next and runs on across data epochs (a new permutation each), with no ``__len__``. So Lightning
injects no ``DistributedSampler`` (which would re-shuffle and pad), sees one endless training epoch
(validation every N rollouts works whatever the dataset's size; there is no mid-epoch position for
Lightning to lose on resume) and a run ends at ``trainer.max_steps``. A resumed run continues with
exactly the prompts an uninterrupted run would have seen: the position is the data module's state.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import IterableDataset


def batch_indices(num_rows: int, batch: int, seed: int, rank: int, world_size: int, per_rank: int) -> list[int]:
    """Row indices of global batch ``batch`` (counted over data epochs) that rank ``rank`` draws."""
    global_size = per_rank * world_size
    per_epoch = num_rows // global_size
    if per_epoch < 1:
        raise ValueError(
            f"the training set has {num_rows} prompts, fewer than one global batch of {global_size} "
            f"({per_rank} per rank x {world_size} ranks)"
        )
    epoch, position = divmod(batch, per_epoch)
    order = torch.randperm(num_rows, generator=torch.Generator().manual_seed(seed + epoch))  # [num_rows]
    start = position * global_size + rank * per_rank
    return order[start : start + per_rank].tolist()


def batches_per_epoch(num_rows: int, per_rank: int, world_size: int) -> int:
    return num_rows // (per_rank * world_size)


class PromptStream(IterableDataset):
    """Collated prompt batches of one rank, from the batch ``next_batch()`` names, without end.

    No ``__len__``: the stream does not end with a data epoch (each data epoch is one permutation of
    the table, see :func:`batch_indices`), so Lightning treats training as one endless epoch.
    """

    def __init__(
        self,
        table: Any,  # datasets.Dataset with the prompt columns
        per_rank: int,
        seed: int,
        rank: int,
        world_size: int,
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
        next_batch: Callable[[], int],
    ) -> None:
        self.table = table
        self.per_rank = per_rank
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.collate = collate
        self.next_batch = next_batch
        self.per_epoch = batches_per_epoch(len(table), per_rank, world_size)
        batch_indices(len(table), 0, seed, rank, world_size, per_rank)  # fails early on a too-small table

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for k in itertools.count(self.next_batch()):
            rows = batch_indices(len(self.table), k, self.seed, self.rank, self.world_size, self.per_rank)
            yield self.collate([self.table[i] for i in rows])
