"""Format reward: the final answer is in ``\\boxed{}`` (and, optionally, the reasoning is closed).

``FormatReward`` gives ``reward`` when the completion (up to its first end-of-turn marker) has a
complete ``\\boxed{…}`` with something in it; with ``require_think=True`` the completion must also
close its reasoning with exactly one ``</think>`` (after any ``<think>``) and put the box after it.
Anything else gets ``penalty``.
"""

from __future__ import annotations

from typing import Any

from lightning_grpo.rewards.base import RewardFunction
from lightning_grpo.rewards.extraction import END_OF_TURN, find_boxed


class FormatReward(RewardFunction):
    """``reward`` for a well-formatted completion, else ``penalty`` (see the module docstring)."""

    def __init__(
        self,
        name: str = "format",
        weight: float = 1.0,
        reward: float = 1.0,
        penalty: float = 0.0,
        require_think: bool = False,
    ) -> None:
        super().__init__(name=name, weight=weight)
        self.reward = reward
        self.penalty = penalty
        self.require_think = require_think

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict[str, Any]) -> float:
        for marker in END_OF_TURN:
            cut = completion.find(marker)
            if cut >= 0:
                completion = completion[:cut]
        if self.require_think:
            if completion.count("</think>") != 1 or completion.count("<think>") > 1:
                return self.penalty
            opening, closing = completion.find("<think>"), completion.find("</think>")
            if opening > closing:
                return self.penalty
            completion = completion[closing + len("</think>") :]
        boxed = find_boxed(completion)
        return self.reward if boxed is not None and boxed.strip() else self.penalty
