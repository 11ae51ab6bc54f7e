"""Prompts from string and conversational rows, non-string prompts refused, and the long-prompt policy.

Conversations go through a Qwen2.5-like chat template (lightning_grpo/demo/standin_model.py: a byte-level tokenizer,
one token per byte, whose template adds a default system turn); long prompts are counted with the
tiny model's character tokenizer (one token per character) and the byte-level one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from transformers import AutoTokenizer, Qwen2Config

import lightning_grpo.data as data_module
from lightning_grpo.prompt_format import PromptFormat, PromptFormatError, fit_prompts, left_pad, question_value, render_prompt
from lightning_grpo.sources import BadRowError, JsonlProblems, _first_bad_json_line
from tests.builders import make_data
from lightning_grpo.demo.standin_model import QWEN_DEFAULT_SYSTEM, build_qwen_like_tokenizer

SYSTEM = "Answer with one number."
CONVERSATION = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 2+3?"}]
USER_ONLY = [{"role": "user", "content": "What is 4+4?"}]


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer folder with Qwen2.5's chat template and a config with a 512-token context (no weights:
    the data module reads only the tokenizer and the context length)."""
    path = tmp_path_factory.mktemp("qwen_like_tokenizer")
    build_qwen_like_tokenizer().save_pretrained(path)
    Qwen2Config(vocab_size=259, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                intermediate_size=8, max_position_embeddings=512).save_pretrained(path)
    return path


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _template(chat_dir: Path, messages: list[dict[str, str]]) -> str:
    return AutoTokenizer.from_pretrained(chat_dir).apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# ---- conversational rows ---------------------------------------------------------------------------------
def test_conversational_jsonl_rows_go_through_the_chat_template(chat_dir: Path, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "chat.jsonl", [{"prompt": CONVERSATION, "answer": "5"}, {"prompt": USER_ONLY, "answer": "8"}])
    data = make_data(JsonlProblems(train_path=str(path), question_field="prompt"), tokenizer=str(chat_dir), max_new_tokens=8)
    data.setup("fit")
    prompts = data.datasets["train"]["prompt"]
    assert prompts[0] == _template(chat_dir, CONVERSATION)
    assert prompts[0].startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nWhat is 2+3?")
    assert prompts[1] == _template(chat_dir, USER_ONLY) and QWEN_DEFAULT_SYSTEM in prompts[1]
    assert "'role'" not in prompts[0]  # not the Python repr of the list
    batch = data.collate([data.datasets["train"][i] for i in range(2)])
    tokenizer = AutoTokenizer.from_pretrained(chat_dir)
    assert batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist() == tokenizer(prompts[0], add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("kind", ["parquet", "saved_dataset"])
def test_a_datasets_table_with_a_list_of_messages_column_is_a_conversation(kind: str, chat_dir: Path, tmp_path: Path) -> None:
    table = datasets.Dataset.from_list([{"messages": CONVERSATION, "gold": "5"}, {"messages": USER_ONLY, "gold": "8"}])
    path = tmp_path / ("t.parquet" if kind == "parquet" else "saved")
    table.to_parquet(str(path)) if kind == "parquet" else table.save_to_disk(str(path))
    source = JsonlProblems(train_path=str(path), question_field="messages", answer_field="gold")
    data = make_data(source, tokenizer=str(chat_dir), max_new_tokens=8)
    data.setup("fit")
    assert data.datasets["train"]["prompt"] == [_template(chat_dir, CONVERSATION), _template(chat_dir, USER_ONLY)]


def test_a_system_prompt_goes_first_only_into_conversations_without_one(chat_dir: Path, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "user_only.jsonl", [{"prompt": USER_ONLY, "answer": "8"}])
    data = make_data(JsonlProblems(train_path=str(path), question_field="prompt"), tokenizer=str(chat_dir),
                     max_new_tokens=8, system_prompt=SYSTEM)
    data.setup("fit")
    assert data.datasets["train"]["prompt"][0] == _template(chat_dir, [{"role": "system", "content": SYSTEM}, *USER_ONLY])
    both = _jsonl(tmp_path / "both.jsonl", [{"prompt": USER_ONLY, "answer": "8"}, {"prompt": CONVERSATION, "answer": "5"}])
    data = make_data(JsonlProblems(train_path=str(both), question_field="prompt"), tokenizer=str(chat_dir),
                     max_new_tokens=8, system_prompt=SYSTEM)
    with pytest.raises(BadRowError, match=r"both\.jsonl', row 2 \(line 2\): its messages have their own system message "
                                          r"and data\.prompt\.system_prompt is set"):
        data.setup("fit")


def test_conversations_without_a_chat_template_or_with_a_template_string_are_refused(
    chat_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "chat.jsonl", [{"prompt": USER_ONLY, "answer": "8"}])
    source = JsonlProblems(train_path=str(path), question_field="prompt")
    with pytest.raises(PromptFormatError, match=rf"chat\.jsonl', row 1 \(line 1\).*conversations.*tokenizer '{tiny_model_dir}' "
                                                r"has no chat template"):
        make_data(source, tokenizer=str(tiny_model_dir), max_new_tokens=8).setup("fit")
    with pytest.raises(PromptFormatError, match=r"use_chat_template is false"):
        make_data(source, tokenizer=str(chat_dir), max_new_tokens=8, use_chat_template=False).setup("fit")
    with pytest.raises(PromptFormatError, match=r"data\.prompt\.template='Q: \{question\}' applies to string prompts.*"
                                                r"set data\.prompt\.template='\{question\}'"):
        make_data(source, tokenizer=str(chat_dir), max_new_tokens=8, prompt_template="Q: {question}").setup("fit")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (12, r"the field 'prompt' is a int \(12\), not a string or a list of messages"),
        ({"role": "user", "content": "hi"}, r"the field 'prompt' is a dict \(.*\), not a string or a list of messages"),
        (["What is", "1+1?"], r"the field 'prompt' is a list, but its item 1 is a str \('What is'\), not a message"),
        ([{"role": "user", "text": "hi"}], r"the field .prompt. is a list, but its item 1 \(.*\) is not a message .* with a string role and a string content"),
        ([], r"the field 'prompt' is an empty list"),
    ],
)
def test_a_prompt_that_is_neither_text_nor_messages_names_file_row_line_and_type(value: Any, why: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text("\n" + json.dumps({"prompt": value, "answer": "2"}) + "\n")  # a blank line 1: row 1 is line 2
    with pytest.raises(BadRowError, match=rf"odd\.jsonl', row 1 \(line 2\): {why}"):
        JsonlProblems(train_path=str(path), question_field="prompt").load("train")
    table = tmp_path / "odd.parquet"  # no lines: the row alone
    datasets.Dataset.from_list([{"prompt": "What is 1+1?", "answer": "2"}] if value == [] else [{"prompt": value, "answer": "2"}]).to_parquet(str(table))
    if value != []:
        with pytest.raises(BadRowError, match=rf"odd\.parquet', row 1: {why}"):
            JsonlProblems(train_path=str(table), question_field="prompt").load("train")


def test_a_prompt_column_that_mixes_text_and_messages_is_read_row_by_row(chat_dir: Path, tmp_path: Path) -> None:
    """datasets (>= 4) reads a JSON column of mixed types as one ``Json`` column: each row is judged alone."""
    rows = [{"prompt": "What is 1+1?", "answer": "2"}, {"prompt": USER_ONLY, "answer": "8"}]
    path = _jsonl(tmp_path / "mixed.jsonl", rows)
    data = make_data(JsonlProblems(train_path=str(path), question_field="prompt"), tokenizer=str(chat_dir), max_new_tokens=8)
    data.setup("fit")
    assert data.datasets["train"]["prompt"] == [_template(chat_dir, [{"role": "user", "content": "What is 1+1?"}]),
                                                _template(chat_dir, USER_ONLY)]
    path = _jsonl(tmp_path / "mixed_number.jsonl", [*rows, {"prompt": 7, "answer": "7"}])
    with pytest.raises(BadRowError, match=r"mixed_number\.jsonl', row 3 \(line 3\): the field 'prompt' is a int \(7\)"):
        JsonlProblems(train_path=str(path), question_field="prompt").load("train")
    # A reader that refuses mixed types (pyarrow's JSON reader under older datasets) gets the line named.
    assert _first_bad_json_line(path) == (
        "line 2: the field 'prompt' is a list here but a string on line 1 (a column holds one type: e.g. all "
        "prompts strings, or all lists of messages)"
    )


def test_a_chat_template_that_refuses_the_messages_is_named_by_row(tmp_path: Path) -> None:
    tokenizer = build_qwen_like_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{{ m['content'] }}{% endfor %}"
    )
    assert render_prompt(PromptFormat(), tokenizer, USER_ONLY) == "What is 4+4?"
    with pytest.raises(ValueError, match=r"chat template refused the messages with the roles \['system', 'user'\]: "
                                         r"System role not supported"):
        render_prompt(PromptFormat(), tokenizer, CONVERSATION)


def test_question_value_keeps_messages_without_the_keys_a_table_filled_with_none() -> None:
    filled = [{"role": "user", "content": "hi", "name": None}]
    assert question_value(filled, "prompt") == [{"role": "user", "content": "hi"}]
    assert question_value("  x ", "prompt") == "  x "


# ---- long prompts ---------------------------------------------------------------------------------------
def _long_rows(tmp_path: Path, name: str = "long.jsonl") -> Path:
    rows = [{"problem": "1+1=", "answer": "2"}, {"problem": "9" * 250, "answer": "9"}, {"problem": "2+2=", "answer": "4"},
            {"problem": "8" * 245, "answer": "8"}, {"problem": "3+3=", "answer": "6"}]
    return _jsonl(tmp_path / name, rows)


def test_a_long_prompt_stops_the_run_naming_file_line_and_the_ways_forward(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = make_data(JsonlProblems(train_path=str(_long_rows(tmp_path))), tokenizer=str(tiny_model_dir), max_new_tokens=16,
                     use_chat_template=False)
    with pytest.raises(PromptFormatError, match=r"long\.jsonl', row 2 \(line 2\): prompt 'long-1' has 250 tokens, more than 240 "
                                                r"tokens .*context of 256.*1 more train prompts too.*data\.prompt\.overlong=drop"):
        data.setup("fit")


def test_drop_skips_long_prompts_and_names_them_in_one_line(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    monkeypatch.setattr(data_module, "rank_zero_info", said.append)
    held_out = _long_rows(tmp_path, "held_out.jsonl")
    source = JsonlProblems(train_path=str(_long_rows(tmp_path)), validation_path=str(held_out))
    data = make_data(source, tokenizer=str(tiny_model_dir), max_new_tokens=16, use_chat_template=False)
    data.prompt = data_module.PromptFormat(use_chat_template=False, overlong="drop")
    data.setup("fit")
    assert data.datasets["train"]["id"] == ["long-0", "long-2", "long-4"]
    assert data.datasets["train"]["prompt"] == ["1+1=", "2+2=", "3+3="]  # each kept row with its own prompt
    assert [len(ids) for ids in data.datasets["train"]["prompt_token_ids"]] == [4, 4, 4]
    assert data.datasets["validation"]["id"] == ["held_out-0", "held_out-2", "held_out-4"]  # the same policy
    assert len(said) == 2 and all("\n" not in line for line in said)
    assert said[0].startswith("data.prompt.overlong=drop: 2 of 5 train prompts are longer than 240 tokens")
    assert "long.jsonl', row 2 (line 2) (id 'long-1', 250 tokens); dataset" in said[0]
    assert "row 4 (line 4) (id 'long-3', 245 tokens)" in said[0]
    assert data.collate([data.datasets["train"][0]])["input_ids"].shape == (1, 4)


def test_drop_with_nothing_left_is_an_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "all_long.jsonl", [{"problem": "7" * 250, "answer": "7"}])
    data = make_data(JsonlProblems(train_path=str(path)), tokenizer=str(tiny_model_dir), max_new_tokens=16)
    data.prompt = data_module.PromptFormat(use_chat_template=False, overlong="drop")
    with pytest.raises(PromptFormatError, match=r"all 1 train prompts are longer than 240 tokens"):
        data.setup("fit")


def test_truncate_left_keeps_the_last_max_length_tokens(chat_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_module, "rank_zero_info", lambda line: None)
    question = "Sum these numbers: " + " + ".join(str(i) for i in range(40)) + ". Reply with the number only."
    path = _jsonl(tmp_path / "long.jsonl", [{"problem": "1+1=", "answer": "2"}, {"problem": question, "answer": "780"}])
    data = make_data(JsonlProblems(train_path=str(path)), tokenizer=str(chat_dir), max_new_tokens=16)
    data.prompt = data_module.PromptFormat(max_length=120, overlong="truncate_left")
    data.setup("fit")
    tokenizer = AutoTokenizer.from_pretrained(chat_dir)
    full = tokenizer(_template(chat_dir, [{"role": "user", "content": question}]), add_special_tokens=False)["input_ids"]
    assert len(full) > 120
    table = data.datasets["train"]
    assert table["prompt_token_ids"][1] == full[-120:]  # the end of the prompt (the generation prompt) stays
    assert table["prompt"][1].endswith("Reply with the number only.<|im_end|>\n<|im_start|>assistant\n")
    assert table["prompt"][0] == _template(chat_dir, [{"role": "user", "content": "1+1="}])  # short: untouched
    batch = data.collate([table[0], table[1]])
    assert batch["input_ids"].shape == (2, 120) and batch["input_ids"][1].tolist() == full[-120:]
    assert batch["attention_mask"][0].sum() == len(table["prompt_token_ids"][0])


def test_max_length_beyond_the_context_left_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = make_data(JsonlProblems(train_path=str(_long_rows(tmp_path))), tokenizer=str(tiny_model_dir), max_new_tokens=16)
    data.prompt = data_module.PromptFormat(max_length=241)
    with pytest.raises(ValueError, match=r"data\.prompt\.max_length=241 is more than .*\(240 = 256 - data\.rollout\.max_new_tokens=16\)"):
        data.setup("fit")


def test_bad_policy_values_are_named() -> None:
    with pytest.raises(ValueError, match=r"data\.prompt\.overlong must be one of \['error', 'drop', 'truncate_left'\], got 'cut'"):
        data_module.PromptFormat(overlong="cut")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data\.prompt\.max_length must be >= 1 or None, got 0"):
        data_module.PromptFormat(max_length=0)


def test_fit_prompts_and_left_pad() -> None:
    ids = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
    assert fit_prompts(ids, 3, "drop").kept == [0, 2]
    truncated = fit_prompts(ids, 3, "truncate_left")
    assert truncated.ids == [[1, 2, 3], [6, 7, 8], [9]] and truncated.overlong == [1]
    input_ids, mask = left_pad([[1, 2], [3]], pad_id=0)
    assert input_ids.tolist() == [[1, 2], [0, 3]] and mask.tolist() == [[1, 1], [0, 1]]
