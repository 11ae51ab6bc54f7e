"""The demo's task: synthetic integer arithmetic (``"37+58="``, gold ``"95"``), generated, not loaded."""

from __future__ import annotations

import random

from lightning_grpo.sources import GeneratedProblems


class Arithmetic(GeneratedProblems):
    """Synthetic integer arithmetic: ``"37+58="`` with gold ``"95"``, deterministic in ``seed``.

    Difficulty knobs: ``max_operand`` (operands are drawn from 0..max_operand), ``num_operands`` and
    ``operations`` (a string over ``+-*``). The validation split never repeats a training question.
    """

    id_prefix = "arith"

    def __init__(
        self,
        max_operand: int = 99,
        num_operands: int = 2,
        operations: str = "+",
        num_train: int = 20000,
        num_validation: int = 200,
        seed: int = 0,
    ) -> None:
        if max_operand < 1:
            raise ValueError(f"max_operand must be >= 1, got {max_operand}")
        if num_operands < 2:
            raise ValueError(f"num_operands must be >= 2, got {num_operands}")
        if not operations or set(operations) - set("+-*"):
            raise ValueError(f"operations must be a non-empty string over '+-*', got {operations!r}")
        super().__init__(num_train, num_validation, seed)
        self.max_operand = max_operand
        self.num_operands = num_operands
        self.operations = operations

    def problem(self, rng: random.Random) -> tuple[str, str, str]:
        parts = [str(rng.randint(0, self.max_operand))]
        for _ in range(self.num_operands - 1):
            parts += [rng.choice(self.operations), str(rng.randint(0, self.max_operand))]
        question = "".join(parts) + "="
        answer = str(self.evaluate(question))
        return question, answer, answer

    @staticmethod
    def evaluate(question: str) -> int:
        """The exact value of a question built by this class ('*' binds tighter than '+' and '-')."""
        terms, sign, product, number = 0, 1, 1, ""
        for ch in question.rstrip("=") + "+":
            if ch.isdigit():
                number += ch
                continue
            product *= int(number)
            number = ""
            if ch == "*":
                continue
            terms += sign * product
            sign, product = (1 if ch == "+" else -1), 1
        return terms
