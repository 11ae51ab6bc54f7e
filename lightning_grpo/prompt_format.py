"""How a row's question becomes the prompt's text and token ids (``data.prompt``).

A question is a string or a **conversation**: a list of messages ``{"role": ..., "content": ...}``
(TRL's conversational format, e.g. ``[{"role": "system", "content": ...}, {"role": "user", "content":
...}]``). Anything else (a number, a dict, a list of something else) is refused by the sources with the
row named (:func:`question_value`).

* A string question: ``template`` (``{question}``) makes the user's message; with a chat template
  (``use_chat_template`` and the tokenizer has one) it becomes the user turn after ``system_prompt``;
  without one it is the whole prompt, after ``system_prompt`` and a blank line.
* A conversation goes through the tokenizer's chat template as it is (``add_generation_prompt=True``).
  ``template`` applies to string questions only: a template other than ``{question}`` with
  conversations is refused (nothing would say it was ignored), and so are conversations without a
  chat template (``use_chat_template: false``, or a tokenizer that has none). ``system_prompt`` is put
  first when a conversation has no system message; a conversation with its own system message and a
  ``system_prompt`` set is refused, naming the row (one of the two would be silently dropped).

Prompts longer than ``max_length`` tokens (default: the model's context minus the completion budget)
follow ``overlong``: ``error`` (stop at set-up, naming the first such row), ``drop`` (skip them, with one
line naming how many and the first few), or ``truncate_left`` (keep their last ``max_length`` tokens,
as TRL does: the start of the prompt, system turn included, is what goes). Held-out prompts follow the
same policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from lightning_grpo.errors import ConfigurationError, short_repr

Overlong = Literal["error", "drop", "truncate_left"]
OVERLONG_POLICIES: tuple[str, ...] = get_args(Overlong)
DEFAULT_TEMPLATE = "{question}"
Message = dict[str, Any]


class PromptFormatError(ConfigurationError):
    """The prompt options do not fit the data or the tokenizer (conversations without a chat template, a
    template with conversations, prompts longer than allowed under ``overlong: error``)."""


@dataclass(frozen=True)
class PromptFormat:
    """How a question becomes a prompt (``data.prompt``; see :mod:`lightning_grpo.prompt_format`).

    Args:
        template: ``str.format`` string with ``{question}``: the user's message made from a string
            question (conversations are used as they are and need the default ``{question}``).
        use_chat_template: format the prompt with the tokenizer's chat template, where it has one
            (conversations need it).
        system_prompt: a system message put first (replacing a chat template's default system turn);
            without a chat template, the prompt's first paragraph.
        max_length: the longest prompt in tokens (None: the model's context minus the completion budget,
            ``data.rollout.max_episode_tokens``); at most that.
        overlong: what happens to a prompt longer than ``max_length``: ``error`` (stop at set-up naming
            it), ``drop`` (skip it; one line says how many and which), ``truncate_left`` (keep its last
            ``max_length`` tokens).
    """

    template: str = DEFAULT_TEMPLATE
    use_chat_template: bool = True
    system_prompt: str | None = None
    max_length: int | None = None
    overlong: Overlong = "error"

    def __post_init__(self) -> None:
        if "{question}" not in self.template:
            raise ConfigurationError(f"data.prompt.template must contain '{{question}}', got {self.template!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigurationError(f"data.prompt.max_length must be >= 1 or None, got {self.max_length}")
        if self.overlong not in OVERLONG_POLICIES:
            raise ConfigurationError(f"data.prompt.overlong must be one of {list(OVERLONG_POLICIES)}, got {self.overlong!r}")


# ---- what a question may be ----------------------------------------------------------------------------
def question_value(value: Any, field_name: str) -> str | list[Message]:
    """A row's question as a string or a conversation; a ``ValueError`` says what else it is.

    Messages keep their keys except those whose value is None (a table fills a key that only some
    messages have with None, which a chat template would read as given).
    """
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"the field {field_name!r} is empty")
        return value
    if value is None:
        raise ValueError(f"the field {field_name!r} is missing (null)")
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        if len(value) == 0:
            raise ValueError(f"the field {field_name!r} is an empty list, not a string or a list of messages")
        return [_message(item, number, field_name) for number, item in enumerate(value, start=1)]
    raise ValueError(
        f"the field {field_name!r} is a {type(value).__name__} ({short_repr(value, 60)}), not a string or a list of "
        'messages [{"role": ..., "content": ...}]'
    )


def _message(item: Any, number: int, field_name: str) -> Message:
    expected = 'a message {"role": ..., "content": ...}'
    if not isinstance(item, Mapping):
        raise ValueError(
            f"the field {field_name!r} is a list, but its item {number} is a {type(item).__name__} "
            f"({short_repr(item, 60)}), not {expected}"
        )
    message = {k: v for k, v in item.items() if v is not None}
    role, content = message.get("role"), message.get("content")
    if not isinstance(role, str) or not role.strip() or not isinstance(content, str):
        raise ValueError(
            f"the field {field_name!r} is a list, but its item {number} ({short_repr(item, 60)}) is not {expected} "
            "with a string role and a string content"
        )
    return message


def is_conversation(question: Any) -> bool:
    return isinstance(question, list)


# ---- text ----------------------------------------------------------------------------------------------
def check_conversation_options(fmt: PromptFormat, tokenizer: PreTrainedTokenizerBase, tokenizer_name: str, data: str) -> None:
    """Refuse options that cannot apply to conversations (``data`` names where they come from)."""
    if not fmt.use_chat_template:
        raise PromptFormatError(
            f"the prompts of {data} are conversations (lists of messages), which need the tokenizer's chat "
            "template, but data.prompt.use_chat_template is false: set it to true"
        )
    if not tokenizer.chat_template:
        raise PromptFormatError(
            f"the prompts of {data} are conversations (lists of messages), but the tokenizer "
            f"{tokenizer_name!r} has no chat template to render them with: use a tokenizer (model) with a "
            "chat template, or string prompts"
        )
    if fmt.template != DEFAULT_TEMPLATE:
        raise PromptFormatError(
            f"data.prompt.template={fmt.template!r} applies to string prompts, but the prompts of {data} are "
            "conversations (lists of messages), used as they are: put the instruction into the messages, or "
            f"set data.prompt.template={DEFAULT_TEMPLATE!r}"
        )


def render_prompt(
    fmt: PromptFormat,
    tokenizer: PreTrainedTokenizerBase,
    question: str | list[Message],
    tools: list[dict] | None = None,
) -> str:
    """The prompt text of one question (conversations: after :func:`check_conversation_options`).

    A ``ValueError`` names what is wrong with this question (a conversation with its own system message
    while ``system_prompt`` is set).
    """
    system = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
    if is_conversation(question):
        messages = list(question)
        if system and any(m["role"] == "system" for m in messages):
            raise ValueError(
                "its messages have their own system message and data.prompt.system_prompt is set (one of the "
                "two would be dropped): remove the system messages from the data or unset data.prompt.system_prompt"
            )
        return _apply_chat_template(tokenizer, system + messages, tools)
    text = fmt.template.format(question=question)  # the user's words, with or without a chat template
    if fmt.use_chat_template and tokenizer.chat_template:
        return _apply_chat_template(tokenizer, system + [{"role": "user", "content": text}], tools)
    return f"{fmt.system_prompt}\n\n{text}" if fmt.system_prompt else text


def _apply_chat_template(tokenizer: PreTrainedTokenizerBase, messages: list[Message], tools: list[dict] | None) -> str:
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **({"tools": tools} if tools else {})
        )  # tools: offered to the model by its own template
    except TemplateError as error:  # the template's own refusal, e.g. "System role not supported"
        roles = [m.get("role") for m in messages]
        raise ValueError(f"the tokenizer's chat template refused the messages with the roles {roles}: {error}") from error


# ---- length ----------------------------------------------------------------------------------------------
@dataclass
class FittedPrompts:
    """Prompts after the length policy: the rows kept (indices into the input) and their ids."""

    kept: list[int]  # indices of the input prompts that stay, in order
    ids: list[list[int]]  # ids of the kept prompts, each at most the limit long
    overlong: list[int] = field(default_factory=list)  # indices of the input prompts over the limit
    lengths: list[int] = field(default_factory=list)  # token counts of all input prompts


def fit_prompts(ids: list[list[int]], limit: int, policy: Overlong) -> FittedPrompts:
    """Apply ``policy`` to the prompts longer than ``limit`` tokens (``error``: the caller raises)."""
    lengths = [len(row) for row in ids]
    overlong = [i for i, n in enumerate(lengths) if n > limit]
    if policy == "drop":
        drop = set(overlong)
        kept = [i for i in range(len(ids)) if i not in drop]
        return FittedPrompts(kept, [ids[i] for i in kept], overlong, lengths)
    if policy == "truncate_left":
        return FittedPrompts(list(range(len(ids))), [row[-limit:] for row in ids], overlong, lengths)
    return FittedPrompts(list(range(len(ids))), list(ids), overlong, lengths)


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids [P, T], attention_mask [P, T])`` of token rows, padded on the left to the longest."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [P, T]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [P, T]
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask
