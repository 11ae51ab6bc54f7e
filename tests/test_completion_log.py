"""Example completions reach every logger that takes a table (TensorBoard, W&B, CSV); others are named once."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_grpo.completion_log import JSONL_NAME, CompletionLog, CompletionTable

TABLE = CompletionTable("completions", ("prompt", "completion", "reward"), [("1+2=", "3", "1.000"), ("a|b", "x\ny", "0.000")], step=7)


def test_tensorboard_gets_a_markdown_table(tmp_path: Path) -> None:
    logger = TensorBoardLogger(str(tmp_path), name="run", version=0)
    CompletionLog().write([logger], TABLE)
    logger.experiment.flush()
    acc = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors("completions/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert event.step == 7
    assert text.splitlines()[0] == "| prompt | completion | reward |"
    assert "| a\\|b | x y | 0.000 |" in text  # cell separators escaped, newlines flattened


def test_csv_logger_gets_json_lines_beside_its_metrics(tmp_path: Path) -> None:
    logger = CSVLogger(str(tmp_path), name="run", version=0)
    log = CompletionLog()
    log.write([logger], TABLE)
    log.write([logger], CompletionTable("validation/greedy_completions", ("prompt", "correct"), [("5+5=", "True")], step=9))
    lines = (Path(logger.log_dir) / JSONL_NAME).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 7, "tag": "completions", "prompt": "1+2=", "completion": "3", "reward": "1.000"},
        {"step": 7, "tag": "completions", "prompt": "a|b", "completion": "x\ny", "reward": "0.000"},
        {"step": 9, "tag": "validation/greedy_completions", "prompt": "5+5=", "correct": "True"},
    ]


class TableLogger(Logger):
    """WandbLogger's table interface without wandb (not installed here)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple] = []

    name = "fake"
    version = 0

    def log_metrics(self, metrics, step=None) -> None:  # type: ignore[no-untyped-def]
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        pass

    def log_table(self, key, columns=None, data=None, dataframe=None, step=None) -> None:  # type: ignore[no-untyped-def]
        self.tables.append((key, columns, data, step))


class PlainLogger(TableLogger):
    log_table = None  # type: ignore[assignment]


def test_a_logger_with_log_table_gets_the_rows_and_every_logger_is_served(tmp_path: Path) -> None:
    table_logger, csv = TableLogger(), CSVLogger(str(tmp_path), name="run", version=0)
    CompletionLog().write([table_logger, csv], TABLE)
    assert table_logger.tables == [("completions", ["prompt", "completion", "reward"], [["1+2=", "3", "1.000"], ["a|b", "x\ny", "0.000"]], 7)]
    assert len((Path(csv.log_dir) / JSONL_NAME).read_text().splitlines()) == 2


def test_a_logger_without_tables_is_named_once() -> None:
    log = CompletionLog()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log.write([PlainLogger()], TABLE)
        log.write([PlainLogger()], TABLE)
    messages = [str(w.message) for w in caught if "example completions" in str(w.message)]
    assert len(messages) == 1 and "not logged to PlainLogger" in messages[0]


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a row has 1 cells for 2 columns"):
        CompletionTable("completions", ("prompt", "completion"), [("only",)], step=0)
