"""Prompt sources: where prompts and gold answers come from.

A source returns a ``datasets.Dataset`` per split with the columns ``id`` (str), ``question`` (str),
``answer`` (the gold answer, str) and ``solution`` (a worked target for supervised warm starts, str,
possibly empty).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import datasets

Split = Literal["train", "validation"]
COLUMNS = ("id", "question", "answer", "solution")


class PromptSource:
    """Base class: ``load(split) -> datasets.Dataset`` with the columns of :data:`COLUMNS`."""

    def load(self, split: Split) -> datasets.Dataset:
        raise NotImplementedError


class Arithmetic(PromptSource):
    """Synthetic integer arithmetic: ``"37+58="`` with gold ``"95"``, deterministic in ``seed``.

    Difficulty knobs: ``max_operand`` (operands are drawn from 0..max_operand), ``num_operands`` and
    ``operations`` (a string over ``+-*``). The validation split never repeats a training question.
    """

    def __init__(
        self,
        max_operand: int = 99,
        num_operands: int = 2,
        operations: str = "+",
        num_train: int = 20000,
        num_validation: int = 200,
        seed: int = 0,
    ) -> None:
        if max_operand < 1:
            raise ValueError(f"max_operand must be >= 1, got {max_operand}")
        if num_operands < 2:
            raise ValueError(f"num_operands must be >= 2, got {num_operands}")
        if not operations or set(operations) - set("+-*"):
            raise ValueError(f"operations must be a non-empty string over '+-*', got {operations!r}")
        if num_train < 1 or num_validation < 0:
            raise ValueError(f"need num_train >= 1 and num_validation >= 0, got {num_train}, {num_validation}")
        self.max_operand = max_operand
        self.num_operands = num_operands
        self.operations = operations
        self.num_train = num_train
        self.num_validation = num_validation
        self.seed = seed

    def _question(self, rng: random.Random) -> str:
        parts = [str(rng.randint(0, self.max_operand))]
        for _ in range(self.num_operands - 1):
            parts += [rng.choice(self.operations), str(rng.randint(0, self.max_operand))]
        return "".join(parts) + "="

    @staticmethod
    def evaluate(question: str) -> int:
        """The exact value of a question built by this class ('*' binds tighter than '+' and '-')."""
        terms, sign, product, number = 0, 1, 1, ""
        for ch in question.rstrip("=") + "+":
            if ch.isdigit():
                number += ch
                continue
            product *= int(number)
            number = ""
            if ch == "*":
                continue
            terms += sign * product
            sign, product = (1 if ch == "+" else -1), 1
        return terms

    def load(self, split: Split) -> datasets.Dataset:
        rng = random.Random(self.seed)
        validation: dict[str, None] = {}
        while len(validation) < self.num_validation:
            validation.setdefault(self._question(rng), None)
        questions = list(validation) if split == "validation" else []
        if split == "train":
            while len(questions) < self.num_train:
                q = self._question(rng)
                if q not in validation:
                    questions.append(q)
        answers = [str(self.evaluate(q)) for q in questions]
        return datasets.Dataset.from_dict(
            {
                "id": [f"arith-{split}-{i}" for i in range(len(questions))],
                "question": questions,
                "answer": answers,
                "solution": answers,
            }
        )


def _read_table(path: str) -> datasets.Dataset:
    if not Path(path).exists():
        raise FileNotFoundError(f"dataset path {path!r} does not exist")
    kind = "parquet" if path.endswith(".parquet") else "json"
    try:
        return datasets.load_dataset(kind, data_files=path, split="train")
    except Exception as error:  # datasets reports an empty or malformed file in its own words
        raise ValueError(f"dataset {path!r} could not be read as {kind} (is it empty or malformed?): {error}") from error


def _require_fields(table: datasets.Dataset, fields: list[str], path: str) -> None:
    missing = [f for f in fields if f not in table.column_names]
    if missing:
        raise ValueError(f"dataset {path!r} lacks the field(s) {missing}; it has {table.column_names}")
    if len(table) == 0:
        raise ValueError(f"dataset {path!r} is empty")


class GSM8K(PromptSource):
    """GSM8K-format jsonl/parquet: ``question`` and ``answer`` with the gold after the last ``####``.

    The worked solution (calculator annotations ``<<48/2=24>>`` stripped) becomes ``solution``.
    """

    def __init__(
        self,
        train_path: str = "../shared/data/gsm8k_train.jsonl",
        validation_path: str | None = "../shared/data/gsm8k_test.jsonl",
    ) -> None:
        self.paths = {"train": train_path, "validation": validation_path}

    def load(self, split: Split) -> datasets.Dataset:
        from lightning_grpo.prompts import gsm8k_gold, strip_calculator_annotations

        path = self.paths[split]
        if path is None:
            raise ValueError(f"GSM8K has no {split} path configured")
        table = _read_table(path)
        _require_fields(table, ["question", "answer"], path)
        return table.map(
            lambda row, i: {
                "id": f"gsm8k-{split}-{i}",
                "question": row["question"],
                "answer": gsm8k_gold(row["answer"]),
                "solution": strip_calculator_annotations(row["answer"]),
            },
            with_indices=True,
            remove_columns=table.column_names,
        )


class JsonlProblems(PromptSource):
    """Any jsonl/parquet with a question field and a gold-answer field (MATH-500: ``problem``, ``answer``)."""

    def __init__(
        self,
        train_path: str = "../shared/data/math500_test.jsonl",
        validation_path: str | None = None,
        question_field: str = "problem",
        answer_field: str = "answer",
        solution_field: str | None = "solution",
    ) -> None:
        self.paths = {"train": train_path, "validation": validation_path}
        self.question_field = question_field
        self.answer_field = answer_field
        self.solution_field = solution_field

    def load(self, split: Split) -> datasets.Dataset:
        path = self.paths[split]
        if path is None:
            raise ValueError(f"{type(self).__name__} has no {split} path configured")
        table = _read_table(path)
        _require_fields(table, [self.question_field, self.answer_field], path)
        has_solution = self.solution_field is not None and self.solution_field in table.column_names
        return table.map(
            lambda row, i: {
                "id": f"{Path(path).stem}-{i}",
                "question": str(row[self.question_field]),
                "answer": str(row[self.answer_field]),
                "solution": str(row[self.solution_field]) if has_solution else "",
            },
            with_indices=True,
            remove_columns=table.column_names,
        )
