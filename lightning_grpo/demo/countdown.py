"""Countdown: reach a target number with some of the given numbers, ``+ - *`` and parentheses.

A prompt lists the numbers and the target, ``"3 7 9 5 -> 41:"``; a completion is an arithmetic
expression such as ``"7*5+9-3"``. It is correct when

* it is only digits, ``+``, ``-``, ``*``, parentheses and spaces, and parses as an expression
  (binary operators, ``*`` binding tighter than ``+`` and ``-``; no unary minus, no division),
* every number in it is one of the given numbers, each given number used at most once (a number
  given twice may be used twice), and
* its value is the target.

Many expressions are right for one prompt: the gold is not an answer to match but the problem
itself, ``"41|3,7,9,5"`` (target, then the numbers), and :class:`CountdownReward` checks the
completion against it by parsing it (never ``eval``: a recursive-descent parser over a whitelist of
characters, bounded in length and nesting, with the numbers checked before anything is evaluated).

The source's ``solution`` column (the supervised warm start's target) is the expression the
problem was built from: a random subset of 2 to ``num_numbers`` of the numbers in random order,
joined by random operators without parentheses. The teacher therefore shows one of the many
right answers, and lengths differ between problems and between right answers of one problem
(``"9*5-4"`` and ``"9*5-7+3"`` both make 41 from 3 7 9 5 4), which gives length-shaping
rewards (AGPO's, DAPO's overlong penalty) something to act on.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from lightning_grpo.rewards.base import CorrectnessReward
from lightning_grpo.sources import GeneratedProblems

_ALLOWED = set("0123456789+-*() ")
MAX_EXPRESSION_CHARS = 200
MAX_NESTING = 20


class CountdownError(ValueError):
    """The completion is not a well-formed expression (the reward scores it as wrong)."""


def parse_expression(text: str) -> tuple[list[int], Any]:
    """The numbers used in ``text`` (in order) and its syntax tree, or :class:`CountdownError`.

    The tree is an ``int`` or a tuple ``(op, left, right)`` with ``op`` in ``+-*``. Nothing is
    evaluated here, so the caller can check the numbers before computing a value.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CountdownError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    bad = set(text) - _ALLOWED
    if bad:
        raise CountdownError(f"characters outside digits, + - * ( ) and spaces: {sorted(bad)}")
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == " ":
            i += 1
        elif ch.isdigit():
            j = i
            while j < len(text) and text[j].isdigit():
                j += 1
            tokens.append(text[i:j])
            i = j
        else:
            tokens.append(ch)
            i += 1
    if not tokens:
        raise CountdownError("empty expression")
    numbers: list[int] = []
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token = tokens[position]
        position += 1
        return token

    def expression(depth: int) -> Any:  # sum := product (('+'|'-') product)*
        node = product(depth)
        while peek() in ("+", "-"):
            op = take()
            node = (op, node, product(depth))
        return node

    def product(depth: int) -> Any:  # product := atom ('*' atom)*
        node = atom(depth)
        while peek() == "*":
            take()
            node = ("*", node, atom(depth))
        return node

    def atom(depth: int) -> Any:  # atom := number | '(' sum ')'
        token = peek()
        if token is None:
            raise CountdownError("expression ends where a number or '(' is expected")
        if token == "(":
            if depth >= MAX_NESTING:
                raise CountdownError(f"parentheses nested deeper than {MAX_NESTING}")
            take()
            node = expression(depth + 1)
            if peek() != ")":
                raise CountdownError("unclosed '('")
            take()
            return node
        if token.isdigit():
            take()
            if len(token) > 1 and token[0] == "0":
                raise CountdownError(f"number with a leading zero: {token!r}")
            numbers.append(int(token))
            return numbers[-1]
        raise CountdownError(f"unexpected {token!r} where a number or '(' is expected")

    tree = expression(0)
    if position != len(tokens):
        raise CountdownError(f"unexpected {tokens[position]!r} after a complete expression")
    return numbers, tree


def evaluate_tree(tree: Any) -> int:
    """The integer value of a tree from :func:`parse_expression`."""
    if isinstance(tree, int):
        return tree
    op, left, right = tree
    a, b = evaluate_tree(left), evaluate_tree(right)
    return a + b if op == "+" else a - b if op == "-" else a * b


def parse_gold(gold: str) -> tuple[int, list[int]]:
    """``"41|3,7,9,5"`` -> (41, [3, 7, 9, 5]); a malformed gold is an error naming it."""
    try:
        target, numbers = gold.split("|")
        return int(target), [int(n) for n in numbers.split(",")]
    except ValueError as error:
        raise ValueError(f"a Countdown gold reads 'target|n1,n2,...', got {gold!r}") from error


def check(completion: str, gold: str) -> bool:
    """Whether ``completion`` reaches the gold's target with its numbers (see the module docstring)."""
    target, given = parse_gold(gold)
    try:
        numbers, tree = parse_expression(completion.strip())
    except CountdownError:
        return False
    if Counter(numbers) - Counter(given):  # a number not given, or used more often than given
        return False
    return evaluate_tree(tree) == target


class CountdownReward(CorrectnessReward):
    """``correct_value`` when the completion is a right Countdown expression, else ``incorrect_value``."""

    def extract(self, completion: str, truncated: bool = False) -> str | None:
        """The expression with spaces removed, when it parses (maj@k votes over expressions)."""
        text = completion.strip()
        try:
            parse_expression(text)
        except CountdownError:
            return None
        return text.replace(" ", "")

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict[str, Any]) -> float:
        return self.correct_value if check(completion, gold) else self.incorrect_value


class Countdown(GeneratedProblems):
    """Countdown problems ``"3 7 9 5 -> 41:"``, deterministic in ``seed`` (see the module docstring).

    Difficulty knobs: ``num_numbers`` given numbers drawn from 1..``max_number``; the teacher's
    expression uses ``min_used``..``num_numbers`` of them; targets lie in 1..``max_target`` (problems
    whose teacher expression falls outside are drawn again). The validation split never repeats a
    training question.
    """

    id_prefix = "countdown"

    def __init__(
        self,
        num_numbers: int = 4,
        max_number: int = 9,
        min_used: int = 2,
        max_target: int = 99,
        operations: str = "+-*",
        num_train: int = 20000,
        num_validation: int = 200,
        seed: int = 0,
    ) -> None:
        if num_numbers < 2 or not 2 <= min_used <= num_numbers:
            raise ValueError(f"need num_numbers >= 2 and 2 <= min_used <= num_numbers; got {num_numbers}, {min_used}")
        if max_number < 1 or max_target < 1:
            raise ValueError(f"need max_number >= 1 and max_target >= 1; got {max_number}, {max_target}")
        if not operations or set(operations) - set("+-*"):
            raise ValueError(f"operations must be a non-empty string over '+-*', got {operations!r}")
        super().__init__(num_train, num_validation, seed)
        self.num_numbers = num_numbers
        self.max_number = max_number
        self.min_used = min_used
        self.max_target = max_target
        self.operations = operations

    def problem(self, rng: random.Random) -> tuple[str, str, str]:
        """(question, gold ``"target|n1,n2,..."``, the teacher's expression as the solution)."""
        while True:
            numbers = [rng.randint(1, self.max_number) for _ in range(self.num_numbers)]
            used = rng.sample(numbers, rng.randint(self.min_used, self.num_numbers))
            parts = [str(used[0])]
            for n in used[1:]:
                parts += [rng.choice(self.operations), str(n)]
            expression = "".join(parts)
            target = evaluate_tree(parse_expression(expression)[1])
            if 1 <= target <= self.max_target:
                break
        question = " ".join(map(str, numbers)) + f" -> {target}:"
        gold = f"{target}|{','.join(map(str, numbers))}"
        return question, gold, expression

