"""The tool environment: finding calls in both formats, running tools, rendering their output as tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lightning_grpo.environments import Tool, ToolEnvironment, ToolResult
from lightning_grpo.models import load_tokenizer

CHATML = (
    "{% for m in messages %}<|startoftext|>{{ m['role'] }}\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|startoftext|>assistant\n{% endif %}"
)


class Reverse(Tool):
    name = "reverse"
    description = "reverses a string"
    argument = "text"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def run(self, source: str) -> ToolResult:
        return ToolResult(source[::-1]) if source != "boom" else ToolResult("error: boom", error="crashed")

    def run_many(self, sources: list[str]) -> list[ToolResult]:
        self.batches.append(list(sources))
        return [self.run(s) for s in sources]


def test_fenced_calls_run_in_one_batch_per_tool_and_cut_the_turn_after_the_call() -> None:
    tool = Reverse()
    env = ToolEnvironment(tools=[tool])
    turns = [
        "let me see\n```reverse\nabc\n```\nand then I ramble",
        "no call here: 42",
        "```python\nprint(1)\n```\n```reverse\nboom\n```",  # an unknown tool's block is not a call; the next one is
    ]
    replies = env.step([None] * 3, turns, 1)
    assert tool.batches == [["abc", "boom"]]
    first, second, third = replies
    assert not first.done and first.message == "cba" and turns[0][: first.cut_at].endswith("abc\n```")
    assert first.tool_calls == 1 and first.tool_errors == 0
    assert second.done and second.tool_calls == 0
    assert not third.done and third.tool_errors == 1 and third.error_kinds == ("crashed",)
    assert env.render(first, None, turn_had_eos=False) == "\n```output\ncba\n```\n"


def test_output_blocks_are_not_calls_and_long_results_are_cut() -> None:
    env = ToolEnvironment(tools=[Reverse()], max_result_chars=5)
    (reply,) = env.step([None], ["```output\n123\n```\nso 123"], 1)
    assert reply.done
    # hard negatives: a block never closed, and a tool name inside prose, are no calls either
    unclosed, in_prose = env.step([None, None], ["```reverse\nabc and then", "I could use reverse here: abc"], 1)
    assert unclosed.done and in_prose.done and unclosed.tool_calls == in_prose.tool_calls == 0
    (reply,) = env.step([None], ["```reverse\nabcdefghij\n```"], 1)
    assert reply.message == "jihgf …[cut]"


@pytest.fixture()
def chat_tokenizer(tiny_model_dir: Path) -> Any:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    tokenizer.chat_template = CHATML
    return tokenizer


def test_json_tool_calls_parse_safely_and_errors_go_back_to_the_model() -> None:
    env = ToolEnvironment(tools=[Reverse()], call_format="tool_call")
    turns = [
        '<tool_call>{"name": "reverse", "arguments": {"text": "xyz"}}</tool_call>',
        '<tool_call>{"name": "reverse", "arguments": {"text": "xyz"}}</tool_call> and more',
        "<tool_call>{'name': __import__('os').system('ls')}</tool_call>",  # not JSON: never evaluated
        '<tool_call>{"name": "rm", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "reverse", "arguments": {"code": "x"}}</tool_call>',
        "The answer is 4.",
    ]
    ok, trailing, not_json, unknown, bad_argument, final = env.step([None] * 6, turns, 1)
    assert ok.message == "zyx" and ok.cut_at is None  # only blanks after the call: the turn (and its EOS) is kept
    assert trailing.cut_at == turns[1].index(" and more")
    assert not_json.tool_errors == 1 and "not JSON" in not_json.message
    assert unknown.tool_errors == 1 and "no tool named 'rm'" in unknown.message and "reverse" in unknown.message
    assert bad_argument.tool_errors == 1 and "'text'" in bad_argument.message
    assert final.done
    assert env.chat_tools()[0]["function"]["name"] == "reverse"
    assert ToolEnvironment(tools=[Reverse()]).chat_tools() is None  # fenced calls need no schema


def test_tool_messages_are_rendered_by_the_chat_template(chat_tokenizer: Any) -> None:
    env = ToolEnvironment(tools=[Reverse()], call_format="tool_call")
    (reply,) = env.step([None], ['<tool_call>{"name": "reverse", "arguments": {"text": "ab"}}</tool_call>'], 1)
    eos = chat_tokenizer.eos_token
    # the model's EOS closed its turn: the environment adds the tool turn and the next assistant header
    assert env.render(reply, chat_tokenizer, turn_had_eos=True) == f"\n<|startoftext|>tool\nba{eos}\n<|startoftext|>assistant\n"
    # a turn cut after its call (no EOS sampled) is closed by the environment's tokens
    assert env.render(reply, chat_tokenizer, turn_had_eos=False).startswith(f"{eos}\n<|startoftext|>tool\nba")
    # ... exactly as the template renders the whole conversation
    conversation = chat_tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "CALL"}, {"role": "tool", "content": "ba"}],
        tokenize=False, add_generation_prompt=True,
    )
    assert conversation.endswith("CALL" + env.render(reply, chat_tokenizer, turn_had_eos=False))


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="max_turns must be >= 1, got 0"):
        ToolEnvironment(tools=[Reverse()], max_turns=0)
    with pytest.raises(ValueError, match="call_format must be 'fenced' or 'tool_call', got 'xml'"):
        ToolEnvironment(tools=[Reverse()], call_format="xml")  # type: ignore[arg-type]
