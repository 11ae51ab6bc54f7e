"""Prompt sources read local files, folders and hub ids, and name the file and line of bad data.

The hub cannot be reached here: the hub path is checked by replacing ``datasets.load_dataset`` with
a recorder that serves the committed samples under ``tests/data/`` (real GSM8K and MATH-500 rows).
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path
from typing import Any

import datasets
import pytest

from lightning_grpo.demo.arithmetic import Arithmetic
from lightning_grpo.sources import GSM8K, MATH, BadRowError, JsonlProblems, is_local_reference, last_boxed, read_table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
GSM8K_TRAIN = DATA / "gsm8k_train_sample.jsonl"
GSM8K_TEST = DATA / "gsm8k_test_sample.jsonl"
MATH500 = DATA / "math500_sample.jsonl"


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class HubRecorder:
    """Stands in for ``datasets.load_dataset``: records hub calls, serves a local table for each id."""

    def __init__(self, tables: dict[str, Path]) -> None:
        self.tables = tables
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.real = datasets.load_dataset

    def __call__(self, path: str, name: str | None = None, split: str | None = None, **kwargs: Any) -> Any:
        if path in ("json", "parquet", "arrow", "csv"):  # a local file, read for real
            return self.real(path, name=name, split=split, **kwargs)
        self.calls.append((path, name, split))
        if path not in self.tables:
            raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")
        return self.real("json", data_files=str(self.tables[path]), split="train")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> HubRecorder:
    recorder = HubRecorder(
        {
            "openai/gsm8k": GSM8K_TRAIN,
            "HuggingFaceH4/MATH-500": MATH500,
            "DigitalLearningGmbH/MATH-lighteval": MATH500,
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", recorder)
    return recorder


# ---- GSM8K -----------------------------------------------------------------------------------------
def test_gsm8k_from_local_files_takes_the_gold_after_the_marker_without_commas() -> None:
    source = GSM8K(train_path=str(GSM8K_TRAIN), validation_path=str(GSM8K_TEST))
    train, test = source.load("train"), source.load("validation")
    assert len(train) == 32 and len(test) == 32
    raw = _rows(GSM8K_TEST)
    assert test[0]["question"] == raw[0]["question"]
    assert test[0]["answer"] == "18"  # "... #### 18"
    golds = test["answer"][-4:]  # the sample's last rows: thousands commas and negative golds
    assert golds == ["2125", "114200", "-10", "-3"]
    assert [r["answer"].rsplit("####", 1)[1].strip() for r in raw[-4:]] == ["2,125", "114,200", "-10", "-3"]
    assert "<<" not in test[0]["solution"] and test[0]["solution"].endswith("#### 18")
    assert test["id"][:2] == ["gsm8k-validation-0", "gsm8k-validation-1"]
    assert set(test.column_names) == {"id", "question", "answer", "solution"}


def test_gsm8k_defaults_are_the_hub_dataset_with_its_config_and_splits(hub: HubRecorder) -> None:
    source = GSM8K()
    train = source.load("train")
    source.load("validation")
    assert hub.calls == [("openai/gsm8k", "main", "train"), ("openai/gsm8k", "main", "test")]
    assert train[0]["answer"] == "72"  # the first GSM8K training problem (Natalia's clips)


def test_every_default_path_is_a_hub_id_or_none() -> None:
    """No default points at a file beside the repository (e.g. ../shared/...)."""
    for cls in (GSM8K, MATH, JsonlProblems):
        for name, parameter in inspect.signature(cls).parameters.items():
            if name.endswith("_path") and parameter.default is not inspect.Parameter.empty:
                default = parameter.default
                assert default is None or not is_local_reference(default), (cls.__name__, name, default)


def test_a_gsm8k_row_without_the_marker_names_the_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    rows = [{"question": "1+1?", "answer": "2\n#### 2"}, {"question": "2+2?", "answer": "it is 4"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"gsm\.jsonl'.*row 2 \(line 2\): no '####'"):
        GSM8K(train_path=str(path)).load("train")


# ---- MATH ------------------------------------------------------------------------------------------
def test_math_takes_the_answer_column_and_keeps_the_other_columns_as_metadata() -> None:
    table = MATH(train_path=str(MATH500), validation_path=None).load("train")
    raw = _rows(MATH500)
    assert table["answer"] == [r["answer"] for r in raw]
    assert table["question"] == [r["problem"] for r in raw]
    assert table["solution"] == [r["solution"] for r in raw]
    assert set(table.column_names) == {"id", "question", "answer", "solution", "subject", "level", "unique_id"}
    assert table[3]["level"] == raw[3]["level"] and table[3]["subject"] == raw[3]["subject"]


def test_math_without_an_answer_column_reads_the_last_box_of_the_solution(tmp_path: Path) -> None:
    """The original MATH release (and MATH-lighteval) has only ``solution``: the gold is its last box."""
    raw = _rows(MATH500)
    path = tmp_path / "math_train.parquet"
    datasets.Dataset.from_list(
        [{"problem": r["problem"], "solution": r["solution"], "type": r["subject"], "level": f"Level {r['level']}"} for r in raw]
    ).to_parquet(str(path))
    table = MATH(train_path=str(path), validation_path=None).load("train")
    assert table["answer"] == [r["answer"] for r in raw]  # nested braces (\frac{..}{..}) included
    assert any("{" in r["answer"] for r in raw)
    assert "type" in table.column_names and table[0]["level"] == f"Level {raw[0]['level']}"


def test_last_boxed_is_the_last_complete_box_with_nested_braces() -> None:
    assert last_boxed(r"so $\boxed{1}$, then \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert last_boxed(r"\fbox{7} and \boxed{x^{2}}") == "x^{2}"
    assert last_boxed("no box here") is None


def test_math_row_without_any_gold_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nogold.jsonl"
    path.write_text(json.dumps({"problem": "p", "solution": "no box"}) + "\n")
    with pytest.raises(ValueError, match=r"nogold\.jsonl'.*row 1 \(line 1\): no gold answer.*'solution' has no \\boxed"):
        MATH(train_path=str(path)).load("train")


def test_math_defaults_are_math_lighteval_for_training_and_math500_for_validation(hub: HubRecorder) -> None:
    source = MATH()
    source.load("train")
    validation = source.load("validation")
    assert hub.calls == [("DigitalLearningGmbH/MATH-lighteval", "default", "train"), ("HuggingFaceH4/MATH-500", None, "test")]
    assert validation["id"][0] == "math-validation-0"


# ---- the generic source: formats, columns, ids -----------------------------------------------------
@pytest.mark.parametrize("kind", ["jsonl", "parquet", "arrow", "csv", "saved_dataset", "saved_dict"])
def test_every_local_format_gives_the_same_table(kind: str, tmp_path: Path) -> None:
    reference = datasets.Dataset.from_list(_rows(MATH500))
    split = "train"
    if kind == "jsonl":
        path = MATH500
    elif kind in ("parquet", "csv"):
        path = tmp_path / f"math.{kind}"
        getattr(reference, f"to_{kind}")(str(path))
    elif kind == "arrow":
        path = tmp_path / "math.arrow"
        reference.flatten_indices().save_to_disk(str(tmp_path / "saved"))
        (tmp_path / "saved" / "data-00000-of-00001.arrow").rename(path)
    elif kind == "saved_dataset":
        path = tmp_path / "saved_dataset"
        reference.save_to_disk(str(path))
    else:
        path = tmp_path / "saved_dict"
        datasets.DatasetDict({"train": reference.select(range(2)), "test": reference}).save_to_disk(str(path))
        split = "test"
    source = JsonlProblems(train_path=str(path), train_split=split)
    table = source.load("train")
    assert table["question"] == [r["problem"] for r in _rows(MATH500)]
    assert table["answer"] == [r["answer"] for r in _rows(MATH500)]


def test_question_and_answer_columns_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "custom.jsonl"
    rows = [{"uid": f"q{i}", "text": f"What is {i}+{i}?", "gold": 2 * i, "prompt": [{"role": "user"}]} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = JsonlProblems(train_path=str(path), question_field="text", answer_field="gold", solution_field=None,
                          id_field="uid").load("train")
    assert table["question"] == ["What is 0+0?", "What is 1+1?", "What is 2+2?"]
    assert table["answer"] == ["0", "2", "4"]  # integers become strings
    assert table["id"] == ["q0", "q1", "q2"]
    assert table["solution"] == ["", "", ""]
    # the data module writes `prompt`, so a column of that name is kept under another name
    assert "prompt" not in table.column_names and table["source_prompt"][0] == [{"role": "user"}]


def test_repeated_ids_are_refused_naming_both_rows_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    rows = [json.dumps({"problem": "p", "answer": "1", "uid": u}) for u in ("a", "b", "a")]
    path.write_text(rows[0] + "\n\n" + rows[1] + "\n" + rows[2] + "\n")  # a blank line 2
    with pytest.raises(BadRowError, match=r"dup\.jsonl', row 3 \(line 4\): id_field 'uid' repeats the id 'a' of row 1 \(line 1\)"):
        JsonlProblems(train_path=str(path), id_field="uid").load("train")


def test_generic_source_reads_a_hub_id_with_config_and_split(hub: HubRecorder) -> None:
    source = JsonlProblems(train_path="HuggingFaceH4/MATH-500", train_split="test", train_config="default")
    table = source.load("train")
    assert hub.calls == [("HuggingFaceH4/MATH-500", "default", "test")]
    assert table["id"][0] == "MATH-500-test-0"


# ---- bad references and bad files ------------------------------------------------------------------
def test_a_missing_local_file_is_named_without_asking_the_hub(hub: HubRecorder) -> None:
    for path in ("data/gsm8k_train.jsonl", "./gsm8k", "../shared/data/x", "/nowhere/train.parquet"):
        with pytest.raises(FileNotFoundError, match=re.escape(repr(path))):
            GSM8K(train_path=path).load("train")
    assert hub.calls == []


def test_an_unreachable_hub_dataset_names_the_id_config_and_split(hub: HubRecorder) -> None:
    with pytest.raises(OSError, match=r"'someone/absent' \(config 'main', split 'test'\).*Hugging Face Hub.*ConnectionError"):
        GSM8K(validation_path="someone/absent").load("validation")


def test_gsm8k_offline_says_how_to_work_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``datasets.load_dataset`` raises offline with nothing cached (datasets 5, HF_DATASETS_OFFLINE=1)."""

    def offline(path: str, name: str | None = None, split: str | None = None, **kwargs: Any) -> Any:
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(OSError) as raised:
        GSM8K().load("train")
    message = str(raised.value)
    assert "'openai/gsm8k' (config 'main', split 'train')" in message and "LocalEntryNotFoundError" in message
    assert "HF_DATASETS_OFFLINE=1" in message
    assert "--data.source.train_path=data/train.jsonl" in message
    assert "datasets.load_dataset('openai/gsm8k', name='main', split='train').to_json('data/train.jsonl')" in message


def test_a_csv_bad_row_names_its_line_after_the_header(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('problem,answer\n"two\nlines",2\n"3+1=",\n')  # row 1 spans lines 2-3; row 2 is line 4
    with pytest.raises(BadRowError, match=r"rows\.csv', row 2 \(line 4\): the field 'answer' is missing"):
        JsonlProblems(train_path=str(path)).load("train")


def test_a_malformed_line_is_named_once_counting_from_1(tmp_path: Path) -> None:
    """The reader's own log line ("JSON parse error ... in row 2", counting from 0) is held back: the error
    names line 3, and nothing else on the screen names another number."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": "2"}\n{"problem": "c", answer\n')
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    reader_log = logging.getLogger("datasets.packaged_modules.json.json")
    reader_log.addHandler(handler)
    try:
        with pytest.raises(ValueError) as raised:
            JsonlProblems(train_path=str(path)).load("train")
    finally:
        reader_log.removeHandler(handler)
    assert [r.getMessage() for r in records if re.search(r"\brow \d", r.getMessage())] == []
    assert str(raised.value).startswith(f"dataset '{path}' could not be read as json at line 3, column 18:")
    assert re.search(r"\brow\b", str(raised.value)) is None and "An error occurred" not in str(raised.value)


def test_a_malformed_jsonl_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    lines = [json.dumps({"problem": f"{i}+1=", "answer": str(i + 1)}) for i in range(5)]
    lines[3] = '{"problem": "3+1=", "answer": 4'  # unterminated object on line 4
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"broken\.jsonl' could not be read as json at line 4, column \d+"):
        JsonlProblems(train_path=str(path)).load("train")


def test_a_jsonl_line_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text(json.dumps({"problem": "1", "answer": "1"}) + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=r"list\.jsonl' could not be read as json at line 2: a JSON list"):
        read_table(str(path))


def test_an_empty_file_and_an_unknown_suffix_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.jsonl"):
        JsonlProblems(train_path=str(empty)).load("train")
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(ValueError, match=r"data\.txt' has an unsupported suffix"):
        read_table(str(odd))


def test_a_split_missing_from_a_saved_dataset_dict_is_named(tmp_path: Path) -> None:
    path = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows(MATH500)[:2])}).save_to_disk(str(path))
    with pytest.raises(ValueError, match=r"dd' \(split 'test'\).*no split 'test'; it has \['train'\]"):
        JsonlProblems(train_path=str(path), train_split="test").load("train")


def test_no_validation_configured_is_a_value_error(tmp_path: Path) -> None:
    """The data module turns this one into 'no validation during fit' (a warning), unlike a load error."""
    with pytest.raises(ValueError, match=r"JsonlProblems has no validation data configured"):
        JsonlProblems(train_path=str(MATH500)).load("validation")


def test_the_repository_does_not_depend_on_files_beside_it() -> None:
    """Nothing in the package, configs, tools, tests or docs reads ../shared (a clone stands alone)."""
    pattern = re.compile(r"\.\./shared|/work/shared|parent\s*/\s*\"shared\"")
    offenders = []
    for folder in ("lightning_grpo", "configs", "tools", "tests", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".yaml", ".yml", ".md", ".toml") and path != Path(__file__):
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if pattern.search(line):
                        offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []



def test_generated_problems_hold_out_distinct_questions_never_trained_on() -> None:
    """Arithmetic over 0..9 with '+' has only 100 questions: 60 held out leaves 40 for 500 training rows,
    so training repeats questions but never draws a held-out one."""
    source = Arithmetic(max_operand=9, num_train=500, num_validation=60, seed=1)
    train, validation = source.load("train"), source.load("validation")
    assert len(validation) == 60 and len(set(validation["question"])) == 60
    assert len(train) == 500 and len(set(train["question"])) == 40
    assert not set(train["question"]) & set(validation["question"])
    assert train["id"][:2] == ["arith-train-0", "arith-train-1"] and validation["id"][0] == "arith-validation-0"
    assert all(a == str(Arithmetic.evaluate(q)) for q, a in zip(train["question"], train["answer"]))
