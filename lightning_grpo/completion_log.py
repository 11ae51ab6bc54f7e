"""Example completions (prompt, completion, extracted answer, gold, reward) in every logger of the run.

A table goes to each logger in the way that logger can take it:

* ``TensorBoardLogger``: a markdown table in the TEXT tab (``add_text``);
* ``WandbLogger`` (or any logger with ``log_table``): a table (``log_table(key, columns, data, step)``);
* ``CSVLogger``: ``completions.jsonl`` in the logger's ``log_dir``, one JSON object per completion
  with ``step`` and ``tag`` beside the columns (a CSV of metrics has no place for text);
* any other logger: nothing, and one warning per logger class says so.

Where tables go that a user might not look for (the JSON-lines file, a logger that takes none) is said
once per run. Call it on global rank 0 only (the module does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

JSONL_NAME = "completions.jsonl"


@dataclass(frozen=True)
class CompletionTable:
    """One sample of completions: ``rows`` of strings, one cell per column, logged under ``tag`` at ``step``."""

    tag: str  # e.g. "completions" (training rollouts) or "validation/greedy_completions"
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    step: int

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"completion table {self.tag!r}: a row has {len(row)} cells for {len(self.columns)} columns {self.columns}")

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        for cells in self.rows:
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        return "\n".join(lines)

    def records(self) -> list[dict[str, object]]:
        return [{"step": self.step, "tag": self.tag, **dict(zip(self.columns, row))} for row in self.rows]


class CompletionLog:
    """Writes :class:`CompletionTable` s to every logger that can take them; says once what it did with the others."""

    def __init__(self) -> None:
        self._announced: set[str] = set()

    def write(self, loggers: Sequence[Logger], table: CompletionTable) -> None:
        for logger in loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text(table.tag, table.markdown(), global_step=table.step)
            elif callable(getattr(logger, "log_table", None)):  # WandbLogger
                logger.log_table(key=table.tag, columns=list(table.columns), data=[list(r) for r in table.rows], step=table.step)
            elif isinstance(logger, CSVLogger):
                path = Path(logger.log_dir) / JSONL_NAME
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as handle:
                    for record in table.records():
                        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._once(str(path), lambda: rank_zero_info(f"example completions ({table.tag}, ...) are written to {path}"))
            else:
                name = type(logger).__name__
                self._once(name, lambda: rank_zero_warn(
                    f"example completions are not logged to {name}: it takes no table here (TensorBoardLogger, "
                    "WandbLogger and CSVLogger do); set model.logging.log_completions_every_n_steps=0 to silence this"
                ))

    def _once(self, key: str, say: Callable[[], None]) -> None:
        if key not in self._announced:
            self._announced.add(key)
            say()
