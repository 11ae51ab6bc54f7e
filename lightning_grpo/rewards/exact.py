"""Exact-integer reward for the synthetic arithmetic task: the completion's answer is one integer."""

from __future__ import annotations

import re
from typing import Any

from lightning_grpo.rewards.base import CorrectnessReward

_INTEGER = re.compile(r"^\s*([+-]?\d+)\s*\.?\s*$")


class ExactInteger(CorrectnessReward):
    """``correct_value`` when the completion (stripped) is exactly the gold integer, else ``incorrect_value``.

    The arithmetic task asks for the bare number, so anything else (extra text, a second number,
    an empty completion) is wrong. Leading zeros and a trailing period are accepted ("042." = 42).
    """

    def extract(self, completion: str, truncated: bool = False) -> str | None:
        match = _INTEGER.match(completion)
        return str(int(match.group(1))) if match is not None else None

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict[str, Any]) -> float:
        match = _INTEGER.match(completion)
        if match is None:
            return self.incorrect_value
        try:
            return self.correct_value if int(match.group(1)) == int(gold.strip()) else self.incorrect_value
        except ValueError:
            return self.incorrect_value
