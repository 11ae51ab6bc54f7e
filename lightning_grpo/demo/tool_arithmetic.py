"""The tool demo's task: products the tiny model cannot work out in its head, but can with a calculator.

:class:`ToolArithmetic` is :class:`~lightning_grpo.demo.arithmetic.Arithmetic` (same questions, same splits) whose
training rows carry a worked *solution* for the warm start: for a share ``tool_share`` of the questions it
is a calculator call in the tool environment's fenced format followed by the tool's output and the answer,
for the others the bare answer (what a model that answers in its head writes)::

    ```calculator            (tool_share of the rows)      |   56088       (the others)
    123*456
    ```
    ```output
    56088
    ```
    56088

The warm start imitates both, so the starting policy sometimes calls the tool and mostly answers directly
(and wrongly). Whether a call helps is then for GRPO to find out: with ``ToolEnvironment`` the call runs
and its output is real; without it (single-turn) the model's call is just text and its "output" a guess.
"""

from __future__ import annotations

import random
from typing import Any

from lightning_grpo.demo.arithmetic import Arithmetic


def tool_solution(question: str, answer: str) -> str:
    """The fenced calculator transcript that answers ``question`` (``"12*34="``)."""
    return f"```calculator\n{question.rstrip('=')}\n```\n```output\n{answer}\n```\n{answer}"


class ToolArithmetic(Arithmetic):
    id_prefix = "tool"

    def __init__(self, max_operand: int = 999, operations: str = "*", tool_share: float = 0.5, **kwargs: Any) -> None:
        """
        Args:
            max_operand, operations: as ``Arithmetic`` (here: products of numbers up to 999).
            tool_share: share of the rows whose solution (for the warm start) calls the calculator.
            kwargs: the other ``Arithmetic`` options (``num_operands``, ``num_train``, ``num_validation``, ``seed``).
        """
        if not 0.0 <= tool_share <= 1.0:
            raise ValueError(f"tool_share must be in [0, 1], got {tool_share}")
        super().__init__(max_operand=max_operand, operations=operations, **kwargs)
        self.tool_share = tool_share

    def problem(self, rng: random.Random) -> tuple[str, str, str]:
        question, answer, _ = super().problem(rng)
        uses_tool = rng.random() < self.tool_share
        return question, answer, tool_solution(question, answer) if uses_tool else answer
