"""The environment interface: how an episode goes on after each model turn.

An episode starts from a problem (a prompt row: question, gold answer, the row's other fields) and
alternates model turns and environment turns. After each model turn the environment reads the turn's
text and answers with an :class:`EnvReply`: done, or a message that is put into the context before the
model's next turn (a tool's output, a user's follow-up). The episode ends when the environment says done,
at the turn limit (``max_turns``), or when the episode's token budget is spent; the rollout engine
(:mod:`lightning_grpo.episodes`) runs the loop, the environment only reads text and writes text.

Token in, token out: the model's turns are kept as the ids it sampled (never re-tokenised); only the
environment's messages are tokenised, and those tokens are in the context but never in the loss.

Rewards come from the reward functions over the final transcript (as for single-turn), and an
environment may add its own per-episode reward (``EnvReply.reward``; the episode's rewards are summed
into the ``environment`` reward component).

Environments are batched: ``step`` takes every active episode of the rank at once, so tools can run in
parallel. After reading TRL's ``environment_factory`` (an object per episode with tool methods) and verl's
``AgentLoop`` / ``BaseInteraction`` (an async loop per sample, interaction turns returning
``(done, response, score)``), this keeps the interaction's shape but leaves sampling to the engine, so the
same sampler (and its batching) serves every turn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Problem:
    """One prompt row as an episode sees it."""

    question: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvReply:
    """The environment's answer to one model turn."""

    done: bool  # the episode ends with this model turn
    message: str | None = None  # what to put into the context before the next model turn (None when done)
    reward: float | None = None  # the environment's own reward for this turn (summed over the episode)
    cut_at: int | None = None  # the model's turn ends at this character of its text (e.g. after its tool call)
    tool_calls: int = 0
    tool_errors: int = 0
    error_kinds: tuple[str, ...] = ()  # e.g. ("timeout",): counted per kind in the logs


class Environment(ABC):
    """Reads model turns, writes environment turns. Subclasses implement ``step`` (and ``render``)."""

    max_turns: int = 1

    def setup(self) -> None:
        """Start what the environment needs (worker pools), before the first rollout."""

    def close(self) -> None:
        """Release what ``setup`` started."""

    def start(self, problem: Problem) -> Any:
        """Per-episode state at the start of an episode (default: the problem itself)."""
        return problem

    @abstractmethod
    def step(self, states: list[Any], turns: list[str], turn_number: int) -> list[EnvReply]:
        """Replies to the latest model turn of each episode (``turns[i]``: its text), in order.

        ``turn_number`` counts from 1. A reply with ``done=False`` on the last allowed turn ends the
        episode anyway (at the turn limit; counted).
        """

    def render(self, reply: EnvReply, tokenizer: PreTrainedTokenizerBase, turn_had_eos: bool) -> str:
        """The text of the environment's tokens for ``reply`` (default: its message as is)."""
        return reply.message or ""

    def chat_tools(self) -> list[dict] | None:
        """Tool schemas for the chat template's ``tools=`` when the prompt is formatted (None: no tools)."""
        return None
