"""Single-turn: the model answers once and the episode ends (GRPO as it started; the default)."""

from __future__ import annotations

from typing import Any

from lightning_grpo.environments.base import Environment, EnvReply


class SingleTurn(Environment):
    """Every episode is one model turn; rewards come from the reward functions alone."""

    max_turns = 1

    def step(self, states: list[Any], turns: list[str], turn_number: int) -> list[EnvReply]:
        return [EnvReply(done=True) for _ in turns]
