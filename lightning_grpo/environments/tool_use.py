"""Tool-integrated reasoning: the model writes a tool call, the environment runs it and returns the output.

After each model turn, :class:`ToolEnvironment` looks for the turn's first tool call. With none, the turn
is the model's final answer and the episode is done (its rewards come from the reward functions over the
transcript). With one, the model's turn ends at the end of the call (any text it sampled after the call is
dropped, the ids it sampled up to there are kept), the tool runs, and its output (or a one-line error) is
put into the context before the model's next turn. Two call formats:

``fenced`` (the default; any model, no chat template needed: ToRA / ToRL style)::

    ```calculator            ```python
    123*456                  print(sum(range(10)))
    ```                      ```

  answered, inside the same turn, by ``\\n```output\\n<result>\\n```\\n``.

``tool_call`` (chat models trained on tool use: Qwen2.5, Hermes)::

    <tool_call>{"name": "calculator", "arguments": {"expression": "123*456"}}</tool_call>

  The tools are offered through the tokenizer's chat template (``tools=``) when the data module formats the
  prompt; the result comes back as a ``tool`` message rendered by the same template (the template's own
  end-of-turn and generation prompt included), so the model sees what it was trained on.

Nothing the model writes is evaluated here: JSON is parsed with ``json.loads``, the calculator parses
arithmetic without ``eval`` and Python runs in :class:`~lightning_grpo.environments.sandbox.PythonSandbox`.
A tool that fails gives the model its error text; the episode goes on, and the failure is counted.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase

from lightning_grpo.environments.base import Environment, EnvReply
from lightning_grpo.environments.tool import Tool

_FENCE = re.compile(r"```([A-Za-z_][\w-]*)[ \t]*\n(.*?)\n?```", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_SENTINEL = "\u2063TOOL-TURN\u2063"  # text no model writes: marks the assistant turn in a rendered template


def _default_tools() -> list[Tool]:
    from lightning_grpo.environments.calculator import Calculator
    from lightning_grpo.environments.sandbox import PythonSandbox

    return [Calculator(), PythonSandbox()]


class ToolEnvironment(Environment):
    def __init__(
        self,
        tools: list[Tool] | None = None,
        max_turns: int = 4,
        call_format: Literal["fenced", "tool_call"] = "fenced",
        max_result_chars: int = 512,
    ) -> None:
        """
        Args:
            tools: the tools the model may call (default: ``Calculator()`` and ``PythonSandbox()``).
            max_turns: model turns per episode (tool calls are at most ``max_turns - 1``).
            call_format: ``fenced`` blocks or JSON ``tool_call`` tags (see the module docstring).
            max_result_chars: a tool's output is cut to this many characters before it enters the context.
        """
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if call_format not in ("fenced", "tool_call"):
            raise ValueError(f"call_format must be 'fenced' or 'tool_call', got {call_format!r}")
        self.tools = {t.name: t for t in (tools if tools is not None else _default_tools())}
        if not self.tools:
            raise ValueError("ToolEnvironment needs at least one tool")
        self.max_turns = max_turns
        self.call_format = call_format
        self.max_result_chars = max_result_chars
        self._tool_turn_cache: dict[int, tuple[str, str]] = {}

    def close(self) -> None:
        for tool in self.tools.values():
            tool.close()

    def chat_tools(self) -> list[dict] | None:
        """The tools for the chat template's ``tools=`` (``tool_call`` format), else None."""
        return [t.schema() for t in self.tools.values()] if self.call_format == "tool_call" else None

    # ---- reading calls ---------------------------------------------------------------------------
    def find_call(self, text: str) -> tuple[str, str, int] | tuple[None, str, int] | None:
        """The first tool call of ``text``: (tool name, its input, end character), (None, error, end) for a
        malformed call, or None when the turn makes no call."""
        if self.call_format == "fenced":
            for match in _FENCE.finditer(text):
                if match.group(1) in self.tools:  # other fences (```output, ```text ...) are no call
                    return match.group(1), match.group(2), match.end()
            return None
        match = _TOOL_CALL.search(text)
        if match is None:
            return None
        try:
            call = json.loads(match.group(1))
            name, arguments = call["name"], call.get("arguments", {})
            if isinstance(arguments, str):
                arguments = json.loads(arguments)
        except (ValueError, KeyError, TypeError) as error:
            return None, f"error: the tool call is not JSON with a name and arguments ({type(error).__name__})", match.end()
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return None, f"error: no tool named {str(name)[:40]!r}; tools: {', '.join(sorted(self.tools))}", match.end()
        if not isinstance(arguments, dict) or not isinstance(arguments.get(tool.argument), str):
            return None, f"error: {name} takes one string argument {tool.argument!r}", match.end()
        return name, arguments[tool.argument], match.end()

    # ---- one step --------------------------------------------------------------------------------
    def step(self, states: list[Any], turns: list[str], turn_number: int) -> list[EnvReply]:
        calls = [self.find_call(text) for text in turns]
        by_tool: dict[str, list[int]] = {}
        for i, call in enumerate(calls):
            if call is not None and call[0] is not None:
                by_tool.setdefault(call[0], []).append(i)
        results: dict[int, Any] = {}
        for name, rows in by_tool.items():  # one batch per tool: the sandbox runs its calls in parallel
            for i, result in zip(rows, self.tools[name].run_many([calls[i][1] for i in rows])):
                results[i] = result
        replies = []
        for i, (call, text) in enumerate(zip(calls, turns)):
            if call is None:
                replies.append(EnvReply(done=True))
                continue
            name, payload, end = call
            if name is None:  # malformed call: the error goes back to the model
                output, errors, kinds = payload, 1, ("malformed",)
            else:
                result = results[i]
                output, errors, kinds = result.text.rstrip("\n"), int(result.error is not None), (result.error,) if result.error else ()
            if len(output) > self.max_result_chars:
                output = output[: self.max_result_chars] + " …[cut]"
            # a chat model's call ends its turn with EOS: keep it (nothing to cut) when only blanks follow
            cut = None if self.call_format == "tool_call" and not text[end:].strip() else end
            replies.append(
                EnvReply(done=False, message=output, cut_at=cut, tool_calls=1, tool_errors=errors, error_kinds=kinds)
            )
        return replies

    # ---- environment tokens ----------------------------------------------------------------------
    def render(self, reply: EnvReply, tokenizer: PreTrainedTokenizerBase, turn_had_eos: bool) -> str:
        if self.call_format == "fenced":
            return f"\n```output\n{reply.message}\n```\n"
        before, after = self._tool_turn(tokenizer)
        text = f"{before}{reply.message}{after}"
        eos = tokenizer.eos_token or ""
        if turn_had_eos and eos and text.startswith(eos):
            text = text[len(eos) :]  # the model's own EOS already closed its turn
        return text

    def _tool_turn(self, tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
        """What the chat template puts between the end of an assistant turn's content and a tool message's
        content, and after it up to the next assistant turn's start: found by rendering a conversation with a
        marker, so any template that knows the ``tool`` role works (one without it falls back to ``user``)."""
        key = id(tokenizer)
        if key not in self._tool_turn_cache:
            if not tokenizer.chat_template:
                raise ValueError("call_format='tool_call' needs a tokenizer with a chat template; use call_format='fenced'")
            base = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}]
            for role in ("tool", "user"):
                try:
                    text = tokenizer.apply_chat_template(
                        base + [{"role": role, "content": _SENTINEL + "R"}], tokenize=False, add_generation_prompt=True
                    )
                    break
                except Exception:  # noqa: BLE001 - a template that rejects the role: try the next
                    continue
            else:
                raise ValueError("the tokenizer's chat template renders neither a 'tool' nor a 'user' message")
            after_turn = text[text.index(_SENTINEL) + len(_SENTINEL) :]
            before, after = after_turn.split(_SENTINEL + "R", 1)
            self._tool_turn_cache[key] = (before, after)
        return self._tool_turn_cache[key]
