"""The Countdown demo task: its verifier (parsing, never eval), its problems and its reward in a batch."""

from __future__ import annotations

import pytest
import torch

from lightning_grpo.demo.countdown import (
    Countdown,
    CountdownReward,
    check,
    evaluate_tree,
    parse_expression,
    parse_gold,
)
from lightning_grpo.rewards.base import RewardBatch, RewardComposer
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rewards.length import AGPOLengthReward


@pytest.mark.parametrize(
    ("completion", "right"),
    [
        ("7*5+9-3", True),  # 35 + 9 - 3 = 41
        (" 7 * 5 + 9 - 3 ", True),  # spaces are fine
        ("(9-3)*7-1", False),  # 41, but 1 is not given
        ("(9-3)*7-5+4", False),  # 41 uses 9 3 7 5 4: 4 is not given
        ("5*9-3-7+6", False),  # 6 not given
        ("9*5-7+3", True),  # 41, order and subset free
        ("9*(5-7)+3", False),  # parentheses change the value: -15
        ("3+7*5-9+5", False),  # 5 used twice but given once
        ("7*5+9-3=41", False),  # '=' is not part of an expression
        ("7*5+9-3.", False),
        ("41", False),  # the target itself is not given
        ("", False),
        ("7*5+", False),
        ("(7*5+9-3", False),
        ("7*5+9-3)", False),
        ("-3+7*5+9", False),  # no unary minus
        ("7 5", False),  # two numbers without an operator
        ("07*5+9-3", False),  # leading zero
        ("__import__('os')", False),
        ("7**5", False),
    ],
)
def test_check_accepts_only_right_expressions_over_the_given_numbers(completion: str, right: bool) -> None:
    assert check(completion, "41|3,7,9,5") is right


def test_a_number_given_twice_may_be_used_twice() -> None:
    assert check("5*5-1", "24|5,5,1")
    assert not check("5*5*5-1", "124|5,5,1")  # three fives from two


def test_precedence_and_parentheses() -> None:
    assert evaluate_tree(parse_expression("2+3*4")[1]) == 14
    assert evaluate_tree(parse_expression("(2+3)*4")[1]) == 20
    assert evaluate_tree(parse_expression("9-3-2")[1]) == 4  # left-associative
    assert evaluate_tree(parse_expression("2*(3-(4+5))")[1]) == -12
    assert parse_expression("(7-3)*9+5")[0] == [7, 3, 9, 5]


def test_bounded_input_is_refused_before_evaluation() -> None:
    deep = "(" * 50 + "1" + ")" * 50
    assert not check(deep, "1|1")
    assert not check("1+" * 150 + "1", "2|1,1")  # longer than the character bound
    # numbers are checked before the value is computed: a huge product of numbers not given is never evaluated
    assert not check("*".join(["999999999"] * 10), "1|1,2,3")


def test_malformed_gold_is_named() -> None:
    with pytest.raises(ValueError, match=r"target\|n1,n2,.*'41;3,7'"):
        parse_gold("41;3,7")


def test_problems_are_solved_by_their_teacher_expression_and_held_out() -> None:
    source = Countdown(num_numbers=3, max_number=9, num_train=500, num_validation=50, seed=3)
    train, validation = source.load("train"), source.load("validation")
    assert len(train) == 500 and len(validation) == 50
    assert not set(train["question"]) & set(validation["question"])
    for table in (train, validation):
        for question, gold, solution in zip(table["question"], table["answer"], table["solution"]):
            target, numbers = parse_gold(gold)
            assert question == " ".join(map(str, numbers)) + f" -> {target}:"
            assert 1 <= target <= 99 and len(numbers) == 3 and all(1 <= n <= 9 for n in numbers)
            assert check(solution, gold), (question, solution)
    # deterministic in the seed, different across seeds
    assert Countdown(num_numbers=3, num_train=500, num_validation=50, seed=3).load("train")["question"] == train["question"]
    assert Countdown(num_numbers=3, num_train=500, num_validation=50, seed=4).load("train")["question"] != train["question"]
    # solutions use 2 or 3 numbers, so their lengths differ
    assert {len(s) for s in train["solution"]} == {3, 5}


def test_bad_knobs_are_named() -> None:
    with pytest.raises(ValueError, match="min_used <= num_numbers; got 3, 4"):
        Countdown(num_numbers=3, min_used=4)
    with pytest.raises(ValueError, match=r"operations must be .* got '\+/'"):
        Countdown(operations="+/")


def test_reward_in_a_batch_and_with_agpo_length_reward() -> None:
    golds = ["41|3,7,9,5"] * 4
    completions = ["9*5-7+3", "7*5+9-3", "9*5-4", "3+7*5-9+5"]  # right, right, wrong (4), wrong (5 twice)
    batch = RewardBatch(
        prompts=["3 7 9 5 -> 41:"] * 4,
        completions=completions,
        golds=golds,
        completion_ids=[f"p/{i}" for i in range(4)],
        group_ids=[0] * 4,
        lengths=[8, 8, 6, 10],
        truncated=[False] * 4,
        max_new_tokens=12,
    )
    composer = RewardComposer([CountdownReward(), AGPOLengthReward(alpha=0.1)])
    total, components = composer(batch)
    assert components["correct"] == [1.0, 1.0, 0.0, 0.0]
    assert composer.correctness is not None and composer.correctness.name == "correct"
    assert total == pytest.approx([1.1, 1.1, 0.0, 0.0], abs=1e-5)  # both right answers are the shortest right ones
    reward = CountdownReward()
    assert reward.extract(" 9 * 5 - 7 + 3") == "9*5-7+3"
    assert reward.extract("9*5-") is None


class _Teacher(torch.nn.Module):
    """A stand-in policy whose ``generate`` writes fixed completions after the prompts."""

    def __init__(self, tokenizer, completions: list[str]) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.tokenizer, self.completions, self.budgets = tokenizer, completions, []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):  # type: ignore[no-untyped-def]
        self.budgets.append(max_new_tokens)
        rows = [self.tokenizer(c, add_special_tokens=False)["input_ids"][:max_new_tokens] for c in self.completions]
        out = torch.full((len(rows), max_new_tokens), self.tokenizer.pad_token_id)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return torch.cat([input_ids, out], dim=1)


def test_warm_start_accuracy_check_judges_countdown_with_its_reward() -> None:
    from lightning_grpo.demo import warm_start
    from lightning_grpo.demo.tiny_model import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    source = Countdown(num_numbers=3, num_train=20, num_validation=4, seed=1)
    table = source.load("validation")
    ws = warm_start.WarmStart(eval_prompts=4, target_accuracy=0.5, reward=CountdownReward())
    probe = ws._probe(source, tokenizer)
    right = list(table["solution"])  # the teacher's expressions: all right, though none is the gold text
    teacher = _Teacher(tokenizer, right[:2] + ["1+1+1+1", right[3] + "+0"])
    accuracy = warm_start._accuracy(teacher, tokenizer, *probe, ws.reward, sample=False, seed=0)
    assert accuracy == pytest.approx(0.5)
    assert teacher.budgets[0] > max(len(s) for s in table["solution"])  # room for the longest teacher expression and EOS
    assert isinstance(warm_start.WarmStart().reward, ExactInteger)  # default: the arithmetic demo's
