"""Prompt sources: where prompts and gold answers come from.

A source returns a ``datasets.Dataset`` per split (``"train"`` or ``"validation"``) with the columns
``id`` (str, unique within the split), ``question`` (a string, or a conversation: a list of messages
``{"role": ..., "content": ...}`` as in TRL's conversational format), ``answer`` (the gold answer, str)
and ``solution`` (a worked target for supervised warm starts, str, possibly empty). Every other column
of the data (MATH's ``level`` and ``subject``, say) is kept as it is, so reward functions can read it
as per-row metadata; extra columns named ``prompt`` or ``prompt_token_ids`` (which the data module writes)
are kept as ``source_prompt`` and ``source_prompt_token_ids``.

The table-backed sources (:class:`GSM8K`, :class:`MATH`, :class:`JsonlProblems`) read each split from
either

* a local file: ``.jsonl``/``.json``, ``.parquet``, ``.arrow`` or ``.csv`` (one file is one split);
* a local folder: one written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk``, or a folder
  of data files that ``datasets.load_dataset`` understands (the split then picks its part); or
* a Hugging Face Hub dataset id such as ``openai/gsm8k``, loaded with
  ``datasets.load_dataset(id, name=<config>, split=<split>)``.

A path that looks like a file (it has one of the suffixes above) or cannot be a hub id (``./x``,
``/x``, ``~/x``, ``a/b/c``) but does not exist is reported as missing, without asking the hub.
The default ids are the hub's own; nothing is read from outside the repository unless a config says so.

Bad rows stop the load, the same for training and held-out data: a row with an empty or missing
question, a question that is neither a string nor a list of messages, an empty or missing gold answer
(after the source's own extraction, e.g. GSM8K's ``####``) or a repeated ``id_field`` raises a
:class:`BadRowError` naming the file (or hub id, config and split), the row counted from 1 in the
order the data holds them and, for a text file (JSON lines, CSV), its line (counted from 1); a file
that cannot be parsed (a malformed JSON line, a field whose type changes between lines) or has bytes
that are not UTF-8 raises a ``ValueError`` naming the file and line. Every count in these messages
starts at 1 (row ids such as ``problems-0`` are names, not counts). Nothing is skipped silently: a
dataset with bad rows is one to fix or filter on purpose, not to train on a quietly different subset.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import random
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import datasets

from lightning_grpo.errors import ConfigurationError
from lightning_grpo.prompt_format import question_value

Split = Literal["train", "validation"]
COLUMNS = ("id", "question", "answer", "solution")
RESERVED_EXTRA = ("prompt", "prompt_token_ids")  # written by the data module; an extra column of these names is renamed
FILE_KINDS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


class BadRowError(ConfigurationError):
    """A row of the data cannot be used (empty question, missing answer, bytes that are not UTF-8): the load
    stops naming the file, the row and the line, for training and held-out data alike."""


class PromptSource:
    """Base class: ``load(split) -> datasets.Dataset`` with the columns of :data:`COLUMNS` (and extras)."""

    def load(self, split: Split) -> datasets.Dataset:
        raise NotImplementedError

    def row_place(self, split: Split, index: int) -> str:
        """Where row ``index`` (from 0) of ``split`` comes from, for messages: the row counted from 1."""
        return f"{type(self).__name__} {split} data, row {index + 1}"


class GeneratedProblems(PromptSource):
    """Problems drawn from a generator seeded with ``seed``: the held-out split is the first
    ``num_validation`` distinct questions it draws, the training split the next ``num_train`` questions
    that are not among them (repeats within training allowed). Subclasses define :meth:`problem` and
    :attr:`id_prefix`."""

    id_prefix: str  # row ids are "<id_prefix>-<split>-<index>"

    def __init__(self, num_train: int, num_validation: int, seed: int) -> None:
        if num_train < 1 or num_validation < 0:
            raise ValueError(f"need num_train >= 1 and num_validation >= 0, got {num_train}, {num_validation}")
        self.num_train = num_train
        self.num_validation = num_validation
        self.seed = seed

    def problem(self, rng: random.Random) -> tuple[str, str, str]:
        """One draw: (question, answer, solution)."""
        raise NotImplementedError

    def load(self, split: Split) -> datasets.Dataset:
        rng = random.Random(self.seed)
        validation: dict[str, tuple[str, str]] = {}
        while len(validation) < self.num_validation:
            question, answer, solution = self.problem(rng)
            validation.setdefault(question, (answer, solution))
        rows = [(q, a, s) for q, (a, s) in validation.items()] if split == "validation" else []
        if split == "train":
            while len(rows) < self.num_train:
                row = self.problem(rng)
                if row[0] not in validation:
                    rows.append(row)
        return datasets.Dataset.from_dict(
            {
                "id": [f"{self.id_prefix}-{split}-{i}" for i in range(len(rows))],
                "question": [q for q, _, _ in rows],
                "answer": [a for _, a, _ in rows],
                "solution": [s for _, _, s in rows],
            }
        )


# ---- reading a table: local file, local folder or hub id ------------------------------------------
def is_local_reference(path: str) -> bool:
    """Whether ``path`` names a local file or folder (existing or not) rather than a hub dataset id."""
    if Path(path).expanduser().exists() or Path(path).suffix.lower() in FILE_KINDS:
        return True
    return _HUB_ID.fullmatch(path) is None  # a hub id is "name" or "owner/name"


def read_table(path: str, split: str = "train", config: str | None = None) -> datasets.Dataset:
    """One split of a dataset from a local file or folder, or from the hub (see the module docstring).

    Errors name the path (and, for the hub, the config and split): a missing local path raises
    ``FileNotFoundError``; a file that cannot be parsed (malformed JSON, empty) ``ValueError``, with the
    line number for JSON lines; a hub dataset that cannot be loaded ``OSError``.
    """
    local = Path(path).expanduser()
    if local.is_file():
        return _read_file(local)
    if local.is_dir():
        return _read_folder(local, split, config)
    if is_local_reference(path):
        raise FileNotFoundError(f"dataset path {path!r} does not exist")
    try:
        table = datasets.load_dataset(path, name=config, split=split)
    except Exception as error:  # offline, unknown id, wrong config or split: datasets says which
        raise OSError(hub_failure(path, config, split, error)) from error
    if not isinstance(table, datasets.Dataset):
        raise ValueError(f"dataset {path!r} (config {config!r}, split {split!r}) did not load as one table: {type(table).__name__}")
    return table


def hub_failure(path: str, config: str | None, split: str, error: BaseException) -> str:
    """The message for a hub dataset that did not load: datasets' reason, and the ways to work offline."""
    return (
        f"dataset {path!r} (config {config!r}, split {split!r}) is not a local file or folder and could not be "
        f"loaded from the Hugging Face Hub with datasets.load_dataset: {type(error).__name__}: {error}. "
        "Offline: set HF_DATASETS_OFFLINE=1 to use a copy already in the datasets cache "
        "(~/.cache/huggingface/datasets), or point the source at a local copy: a .jsonl/.json/.parquet/.arrow/.csv "
        "file, a folder of such data files, or one written by save_to_disk (e.g. "
        "--data.source.train_path=data/train.jsonl --data.source.validation_path=data/test.jsonl). Make one "
        f"where the hub is reachable: datasets.load_dataset({path!r}, name={config!r}, split={split!r})"
        ".to_json('data/train.jsonl')"
    )


def _read_file(path: Path) -> datasets.Dataset:
    kind = FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"dataset file {str(path)!r} has an unsupported suffix; expected one of {sorted(FILE_KINDS)}")
    try:
        with _reader_log_silenced(kind):
            return datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as error:  # datasets reports an empty or malformed file in its own words
        where = _first_non_utf8_line(path) if kind in ("json", "csv") else None
        if where is None and kind == "json":
            where = _first_bad_json_line(path)
        if where is not None:  # the line we found says it better than the reader's (0-based) "row"
            raise ValueError(
                f"dataset {str(path)!r} could not be read as {kind} at {where} (lines count from 1)"
            ) from error
        raise ValueError(
            f"dataset {str(path)!r} could not be read as {kind} (is it empty or malformed?): {_innermost(error)}"
        ) from error


@contextlib.contextmanager
def _reader_log_silenced(kind: str) -> Iterator[None]:
    """Hold back the reader's own error log line (e.g. pyarrow's "JSON parse error ... in row 2", whose row
    counts from 0) while :func:`_read_file` reads: its error names the file and the line instead."""
    logger = logging.getLogger(f"datasets.packaged_modules.{kind}.{kind}")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _innermost(error: BaseException) -> str:
    """The innermost cause's text (datasets wraps the reader's reason in "An error occurred while generating ...")."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


def _read_folder(path: Path, split: str, config: str | None) -> datasets.Dataset:
    try:
        if (path / "dataset_dict.json").exists():  # DatasetDict.save_to_disk
            saved = datasets.load_from_disk(str(path))
            if split not in saved:
                raise ValueError(f"it has no split {split!r}; it has {sorted(saved)}")
            return saved[split]
        if (path / "state.json").exists():  # Dataset.save_to_disk: one split
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset(str(path), name=config, split=split)
    except Exception as error:
        raise ValueError(f"dataset folder {str(path)!r} (split {split!r}) could not be read: {error}") from error


def _first_non_utf8_line(path: Path) -> str | None:
    """``"line N, byte B: not UTF-8 text"`` for the first bytes of ``path`` that are not UTF-8, else None
    (lines and bytes counted from 1; the byte within the file)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return f"line {line}, byte {error.start + 1}: not UTF-8 text ({data[error.start:error.start + 1]!r})"
    return None


def _data_lines(path: Path) -> list[int] | None:
    """For a local JSON-lines or CSV file, the line (from 1) where each row starts (blank lines hold
    none, a CSV's first line is its header); else None."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv") or not path.is_file():
        return None
    try:
        if suffix == ".jsonl":
            return [n for n, line in enumerate(path.read_bytes().split(b"\n"), start=1) if line.strip()]
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            starts, start = [], 1
            for record in reader:  # a quoted field may span lines: a record starts after the previous one
                if record:
                    starts.append(start)
                start = reader.line_num + 1
        return starts[1:]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _first_bad_json_line(path: Path) -> str | None:
    """``"line N: why"`` for the first line of a JSON-lines file that is not a JSON object, else None.

    A file whose first non-blank character is ``[`` is read as one JSON document instead.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return _first_non_utf8_line(path)
    if not text.strip():
        return None
    if text.lstrip().startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            return f"line {error.lineno}, column {error.colno}: {error.msg}"
        return None
    seen: dict[str, tuple[str, int]] = {}  # field -> (JSON type, first line with it)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            return f"line {number}, column {error.colno}: {error.msg}"
        if not isinstance(row, dict):
            return f"line {number}: a JSON {type(row).__name__}, not an object"
        for key, value in row.items():
            kind = _json_kind(value)
            if kind is None:
                continue
            first = seen.setdefault(key, (kind, number))
            if first[0] != kind:
                return (
                    f"line {number}: the field {key!r} is a {kind} here but a {first[0]} on line {first[1]} (a "
                    "column holds one type: e.g. all prompts strings, or all lists of messages)"
                )
    return None


def _json_kind(value: Any) -> str | None:
    """The JSON type of a value as a table column sees it (None: null, which fits any column)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _require_fields(table: datasets.Dataset, fields: list[str], where: str) -> None:
    missing = [f for f in fields if f not in table.column_names]
    if missing:
        raise ValueError(f"dataset {where} lacks the field(s) {missing}; it has {table.column_names}")
    if len(table) == 0:
        raise ValueError(f"dataset {where} is empty")


# ---- table-backed sources --------------------------------------------------------------------------
class TableSource(PromptSource):
    """A prompt source read from a local file or folder or a hub dataset, one reference per split.

    Subclasses say which columns they need (:meth:`required_fields`) and turn one row into the
    ``question``/``answer``/``solution`` strings (:meth:`convert`); the columns they consume are
    replaced by the standard ones and every other column is kept.
    """

    def __init__(
        self,
        train_path: str | None,
        validation_path: str | None,
        train_config: str | None,
        validation_config: str | None,
        train_split: str,
        validation_split: str,
        question_field: str,
        answer_field: str,
        id_field: str | None,
    ) -> None:
        self.paths = {"train": train_path, "validation": validation_path}
        self.configs = {"train": train_config, "validation": validation_config}
        self.splits = {"train": train_split, "validation": validation_split}
        self.question_field = question_field
        self.answer_field = answer_field
        self.id_field = id_field
        self._lines: dict[str, list[int] | None] = {}  # per split: the line (from 1) of each row of a text file

    # -- what a subclass defines
    def required_fields(self, table: datasets.Dataset) -> list[str]:
        return [self.question_field, self.answer_field]

    def consumed_fields(self) -> list[str]:
        return [self.question_field, self.answer_field]

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """``question`` (a string or a conversation, see :func:`~lightning_grpo.prompt_format.question_value`),
        ``answer`` and ``solution`` of one row; a ``ValueError`` names what is wrong."""
        raise NotImplementedError

    def id_prefix(self, split: Split) -> str:
        raise NotImplementedError

    # -- shared
    def describe(self, split: Split) -> str:
        path = self.paths[split]
        if path is not None and not is_local_reference(path):
            return f"{path!r} (config {self.configs[split]!r}, split {self.splits[split]!r})"
        return repr(path)

    def row_place(self, split: Split, index: int) -> str:
        """``dataset '<file>', row N (line L)`` for row ``index`` (from 0): rows and lines count from 1; the
        line only for text files (JSON lines, CSV), where rows have one."""
        return f"dataset {self.describe(split)}, row {index + 1}{self._line_note(split, index)}"

    def load(self, split: Split) -> datasets.Dataset:
        path = self.paths[split]
        if path is None:
            raise ValueError(f"{type(self).__name__} has no {split} data configured ({split}_path is None)")
        table = read_table(path, self.splits[split], self.configs[split])
        where = self.describe(split)
        local = Path(path).expanduser()
        self._lines[split] = _data_lines(local) if local.is_file() else None
        _require_fields(table, self.required_fields(table), where)
        if self.id_field is not None:
            _require_fields(table, [self.id_field], where)
            ids = [str(v) for v in table[self.id_field]]
            first: dict[str, int] = {}
            for index, row_id in enumerate(ids):
                if row_id in first:
                    raise BadRowError(
                        f"{self.row_place(split, index)}: id_field {self.id_field!r} repeats the id {row_id!r} of "
                        f"row {first[row_id] + 1}{self._line_note(split, first[row_id])} (rows and lines count from 1)"
                    )
                first[row_id] = index
        prefix = self.id_prefix(split)
        consumed = set(self.consumed_fields()) | set(COLUMNS)
        if self.id_field is not None and self.id_field not in consumed:
            consumed.add(self.id_field)
        renamed = {c: f"source_{c}" for c in RESERVED_EXTRA if c in table.column_names and c not in consumed}
        convert = self._row_converter(split, prefix)
        table = table.map(
            convert,
            with_indices=True,
            remove_columns=[c for c in table.column_names if c in consumed],
            keep_in_memory=True,
            desc=None,
        )
        return table.rename_columns(renamed) if renamed else table

    def _line_note(self, split: Split, index: int) -> str:
        lines = self._lines.get(split)
        return f" (line {lines[index]})" if lines is not None and index < len(lines) else ""

    def _row_converter(self, split: Split, prefix: str) -> Callable[[dict[str, Any], int], dict[str, Any]]:
        id_field = self.id_field

        def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
            try:
                fields = self.convert(row)
            except ValueError as error:
                why = f"not UTF-8 text ({error})" if isinstance(error, UnicodeDecodeError) else str(error)
                raise BadRowError(
                    f"{self.row_place(split, index)}: {why}; bad rows stop the load (rows and lines "
                    "count from 1): fix or remove this row"
                ) from error
            row_id = str(row[id_field]) if id_field is not None else f"{prefix}-{index}"
            return {"id": row_id, **fields}

        return convert


def _text(row: dict[str, Any], field: str) -> str:
    value = row.get(field)
    if value is None:
        raise ValueError(f"the field {field!r} is missing (null)")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"the field {field!r} is empty")
    return str(value)


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, else None.

    Uses the verifier's own box scanner (nested braces), so golds and completions are read alike.
    """
    from lightning_grpo.rewards.extraction import last_box

    return last_box(text)


class GSM8K(TableSource):
    """GSM8K (Cobbe et al. 2021): grade-school word problems with an integer answer.

    The gold is the text after the last ``####`` of the answer column, thousands commas removed
    (``"#### 6,600"`` → ``"6600"``); the worked solution before it, with the calculator annotations
    ``<<48/2=24>>`` stripped, becomes ``solution``. Defaults: the hub's ``openai/gsm8k`` (config
    ``main``), ``train`` for training and ``test`` (1,319 problems) for validation. A local copy:
    ``train_path: data/gsm8k_train.jsonl``. For a variant whose answer column already holds the bare
    number use :class:`JsonlProblems`.
    """

    def __init__(
        self,
        train_path: str | None = "openai/gsm8k",
        validation_path: str | None = "openai/gsm8k",
        train_config: str | None = "main",
        validation_config: str | None = "main",
        train_split: str = "train",
        validation_split: str = "test",
        question_field: str = "question",
        answer_field: str = "answer",
        id_field: str | None = None,
    ) -> None:
        super().__init__(
            train_path, validation_path, train_config, validation_config, train_split, validation_split,
            question_field, answer_field, id_field,
        )

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        from lightning_grpo.prompts import gsm8k_gold, strip_calculator_annotations

        worked = _text(row, self.answer_field)
        return {
            "question": question_value(row.get(self.question_field), self.question_field),
            "answer": gsm8k_gold(worked),
            "solution": strip_calculator_annotations(worked),
        }

    def id_prefix(self, split: Split) -> str:
        return f"gsm8k-{split}"


class MATH(TableSource):
    """MATH (Hendrycks et al. 2021): competition problems with LaTeX answers.

    The gold is the ``answer`` column where the data has one (MATH-500) and otherwise the content of
    the last ``\\boxed{}`` of ``solution`` (the original MATH release); ``solution`` is kept as the
    worked target. Defaults: training on the hub's ``DigitalLearningGmbH/MATH-lighteval`` (config
    ``default``, split ``train``: the 7,500 MATH training problems) and validation on
    ``HuggingFaceH4/MATH-500`` (split ``test``: the 500-problem subset of "Let's Verify Step by Step").
    Extra columns (``level``, ``type``/``subject``, ``unique_id``) are kept.
    """

    def __init__(
        self,
        train_path: str | None = "DigitalLearningGmbH/MATH-lighteval",
        validation_path: str | None = "HuggingFaceH4/MATH-500",
        train_config: str | None = "default",
        validation_config: str | None = None,
        train_split: str = "train",
        validation_split: str = "test",
        question_field: str = "problem",
        answer_field: str = "answer",
        solution_field: str = "solution",
        id_field: str | None = None,
    ) -> None:
        super().__init__(
            train_path, validation_path, train_config, validation_config, train_split, validation_split,
            question_field, answer_field, id_field,
        )
        self.solution_field = solution_field

    def required_fields(self, table: datasets.Dataset) -> list[str]:
        gold = self.answer_field if self.answer_field in table.column_names else self.solution_field
        return [self.question_field, gold]

    def consumed_fields(self) -> list[str]:
        return [self.question_field, self.answer_field, self.solution_field]

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        solution = row.get(self.solution_field)
        solution = "" if solution is None else str(solution)
        answer = row.get(self.answer_field)
        if answer is None or not str(answer).strip():
            answer = last_boxed(solution)
            if not answer:
                raise ValueError(
                    f"no gold answer: the field {self.answer_field!r} is missing or empty and the field "
                    f"{self.solution_field!r} has no \\boxed{{}}"
                )
        return {"question": question_value(row.get(self.question_field), self.question_field), "answer": str(answer).strip(), "solution": solution}

    def id_prefix(self, split: Split) -> str:
        return f"math-{split}"


class JsonlProblems(TableSource):
    """Any table with a question field and a gold-answer field, from a file, a folder or the hub.

    Defaults fit MATH-500's columns (``problem``, ``answer``, ``solution``); ``solution`` is optional.
    ``train_path`` has no default: name your data (``--data.source.train_path=problems.jsonl``).
    Ids are ``<file stem>-<row>`` (or ``<name>-<split>-<row>`` for a hub dataset).
    """

    def __init__(
        self,
        train_path: str | None,
        validation_path: str | None = None,
        question_field: str = "problem",
        answer_field: str = "answer",
        solution_field: str | None = "solution",
        train_config: str | None = None,
        validation_config: str | None = None,
        train_split: str = "train",
        validation_split: str = "test",
        id_field: str | None = None,
    ) -> None:
        super().__init__(
            train_path, validation_path, train_config, validation_config, train_split, validation_split,
            question_field, answer_field, id_field,
        )
        self.solution_field = solution_field

    def consumed_fields(self) -> list[str]:
        fields = [self.question_field, self.answer_field]
        return fields + [self.solution_field] if self.solution_field is not None else fields

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        solution = row.get(self.solution_field) if self.solution_field is not None else None
        return {
            "question": question_value(row.get(self.question_field), self.question_field),
            "answer": _text(row, self.answer_field),
            "solution": "" if solution is None else str(solution),
        }

    def id_prefix(self, split: Split) -> str:
        path = str(self.paths[split])
        if is_local_reference(path):
            return Path(path).stem
        return f"{Path(path).name}-{self.splits[split]}"
