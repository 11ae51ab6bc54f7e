"""The math verifier: extraction, normalisation, equivalence, guards, and the labelled corpus."""

from __future__ import annotations

import random
import re
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from build_verifier_corpus import load_corpus  # noqa: E402

from lightning_grpo.prompts import gsm8k_gold, strip_calculator_annotations  # noqa: E402
from lightning_grpo.rewards import extract_answer, verify  # noqa: E402
from lightning_grpo.rewards.normalize import normalize_answer  # noqa: E402
from lightning_grpo.rewards.extraction import extract_candidates  # noqa: E402
from lightning_grpo.rewards.verifier import Verdict, VerifyPolicy, check, gold_answer  # noqa: E402

CASES = [
    # extraction
    ("Thus \\boxed{\\frac{\\sqrt{3}}{2}}.", "\\frac{\\sqrt3}{2}", True),
    ("\\fbox{42}", "42", True),
    ("#### 1,234", "1234", True),
    ("####42", "42", True),
    ("Final Answer: The final answer is $18$. I hope it is correct.", "18", True),
    ("**Answer:** 7", "7", True),
    ("<think>The answer is 5.</think>The answer is 6.", "5", False),
    ("The answer is 6.<|im_end|>The answer is 5.", "5", False),
    ("The answer is 3 or 4.", "3", False),
    ("\\boxed{3} or \\boxed{4}", "4", False),
    ("We multiply by 12", "12", False),
    ("So Tom has 12 apples.", "12", True),
    # normalisation
    ("\\boxed{½}", "0.5", True),
    ("\\boxed{３π}", "3\\pi", True),
    ("\\boxed{4\u200b2}", "42", True),
    ("\\boxed{1\\,000\\,000}", "1000000", True),
    ("\\boxed{\\$32,\\!348}", "32348", True),
    ("\\boxed{\\left( 3, \\dfrac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})", True),
    ("\\boxed{5.4 \\text{ cents}}", "5.4", True),
    ("\\boxed{30^\\circ}", "30", True),
    ("\\boxed{x = 5}", "5", True),
    # equivalence
    ("\\boxed{0.75}", "\\frac34", True),
    ("\\boxed{\\frac{1}{2004!}}", "\\frac{1}{2006!}", False),
    ("\\boxed{123456789012345678901234567890}", "123456789012345678901234567891", False),
    ("\\boxed{\\sqrt{8}}", "2\\sqrt2", True),
    ("\\boxed{\\ln(e^3)}", "3", True),
    ("\\boxed{\\sin(\\pi/6)}", "\\frac12", True),
    ("\\boxed{(x+1)^2}", "x^2+2x+1", True),
    ("\\boxed{(\\frac{\\pi}{2}, 3)}", "(3, \\frac{\\pi}{2})", False),
    ("\\boxed{\\{3, 1, 2\\}}", "\\{1,2,3\\}", True),
    ("\\boxed{x \\ge 2}", "[2, \\infty)", True),
    ("\\boxed{x > 2}", "[2, \\infty)", False),
    ("\\boxed{(-\\infty,2)\\cup(3,\\infty)}", "(3,\\infty)\\cup(-\\infty,2)", True),
    ("\\boxed{1+\\sqrt{19}, 1-\\sqrt{19}}", "1 \\pm \\sqrt{19}", True),
    ("\\boxed{2x - y + 3 = 0}", "y = 2x + 3", True),
    ("\\boxed{\\text{(C)}}", "C", True),
    ("\\boxed{3.14}", "\\pi", False),
    # guards
    ("\\boxed{10^{10^{10}}}", "10^{10^{10}}", True),
    ("\\boxed{10^{10^{10}}}", "10^{10^{10}}+1", False),
    ("\\boxed{(1000!)!}", "1", False),
    # hedges in every extraction style are no answer (each was scored correct before)
    ("The answer is $3$ or $4$.", "3", False),
    ("**3** or **4**", "4", False),
    ("So it is 3 or 4.", "4", False),
    ("\\boxed{42 \\text{ (or 43)}}", "42", False),
    ("The answer is 42 or more.", "42", False),
    ("\\boxed{5\\text{ or fewer}}", "5", False),
    # ... unless the options are one value, or exactly the gold's collection of values
    ("\\boxed{15\\frac{39}{40}}, or \\boxed{\\frac{639}{40}}", "\\frac{639}{40}", True),
    ("The answer is 1/2 or 0.5.", "\\frac12", True),
    ("\\boxed{x = 3 \\text{ or } x = 4}", "3, 4", True),
    ("\\boxed{x = 3 \\text{ or } x = 4}", "3", False),
    ("The answer is 3 or 4.", "3, 4, 5", False),
    # units stay units, qualifiers do not
    ("\\boxed{10\\text{ inches}^2}", "10", True),
    ("\\boxed{5 \\text{ square feet}}", "5", True),
    # two numbers side by side are no product ("1 2" is not 2)
    ("\\boxed{1 2}", "2", False),
    ("\\boxed{10 0}", "0", False),
    # an unreadable answer matches only the same spelling, not the same letters and digits
    ("\\boxed{528}", "52_8", False),
    ("\\boxed{52_{8}}", "52_8", True),
    ("\\boxed{2\\#10}", "2^{10}", False),
    ("\\boxed{1;2}", "12", False),
    ("\\boxed{[a+5)(b+2]}", "(a+5)(b+2)", False),
    ("\\boxed{>5}", "5", False),
    ("\\boxed{,5}", "5", False),
    ("\\boxed{\\text{}}", "", False),
    # zero is exact zero (or a cancellation), not a small number
    ("\\boxed{e^{-100}}", "0", False),
    ("\\boxed{\\sqrt{2}+\\sqrt{3}-\\sqrt{5+2\\sqrt{6}}}", "0", True),
    # more spellings
    ("\\boxed{\\left[\\begin{matrix}1\\\\2\\end{matrix}\\right]}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True),
    ("\\boxed{\\left[\\begin{matrix}2\\\\1\\end{matrix}\\right]}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", False),
    ("\\boxed{1{,}000}", "1000", True),
    ("\\boxed{\\mathbb{R}}", "(-\\infty, \\infty)", True),
    ("\\boxed{\\varnothing}", "\\emptyset", True),
    ("\\boxed{\\cos 2\\theta}", "\\cos(2\\theta)", True),
    ("\\boxed{\\cos 2\\theta}", "\\theta\\cos 2", False),
    ("\\boxed{\\frac{(2n)!}{n!^2}}", "\\binom{2n}{n}", True),
    ("\\boxed{\\binom{n}{2}}", "\\frac{n(n-1)}{2}", True),
    ("\\boxed{\\binom{n}{2}}", "\\frac{n(n+1)}{2}", False),
]

# Issue #12: answers as real models write them, golds as datasets store them, relations, sets and
# matrices. Each style is paired with a wrong value in the same style.
CASES_12 = [
    # no colon after "Answer", Minerva's prose final answer, R1-Zero tags
    ("Answer $9$", "9", True), ("Answer \\( 9 \\)", "9", True), ("Answer \\[ 9 \\]", "9", True), ("Answer $8$", "9", False),
    ("Final Answer: The final answer is $10,455$. I hope it is correct.", "10455", True),
    ("Final Answer: The largest $n$ is 34.", "34", True), ("Final Answer: The largest $n$ is 43.", "34", False),
    ("<think>6 * 7</think><answer> 42 </answer>", "42", True), ("<think>6 * 7</think><answer> 41 </answer>", "42", False),
    # the final statement's math or number, when there is no marker
    ("Subtracting gives $3x = 21$, so $x = 7$.", "7", True), ("Subtracting gives $3x = 21$, so $x = 8$.", "7", False),
    ("Therefore, the probability that Alice wins is 2/3.", "\\frac23", True),
    ("Therefore, there are 12 sequences that meet the three conditions.", "12", True),
    ("The roots of $P(x)$ are $-2$ and $1$.", "1, -2", True), ("The roots of $P(x)$ are $-2$ and $1$.", "1", False),
    ("We find $x = 5$ or $x = 6$.", "5", False), ("-\\frac{10}{9}", "-10/9", True), ("\\frac{10}{9}", "-10/9", False),
    # text after an end-of-turn or chat token is another turn
    ("\\boxed{5}<|im_end|>\n<|im_start|>user\nno, \\boxed{6}", "6", False), ("The answer is 5.<|im_start|>user", "5", True),
    ("\\boxed{4}<|endoftext|>\\boxed{5}", "5", False), ("\\boxed{4}</s>[INST] \\boxed{5}", "5", False),
    # golds as datasets store them
    ("\\boxed{29}", "$29$", True), ("\\boxed{29}", "\\(29\\)", True), ("\\boxed{29}", "\\boxed{29}", True), ("\\boxed{28}", "\\boxed{29}", False),
    ("\\boxed{1000}", "1 000", True), ("\\boxed{1000}", "1{,}000", True), ("\\boxed{100}", "1{,}000", False),
    ("\\boxed{0.4}", ".4", True), ("\\boxed{\\frac{10}{9}}", "10/9", True), ("\\boxed{\\frac{9}{10}}", "10/9", False),
    ("\\boxed{28}", "28\\%", True), ("28 pct", "28\\%", True), ("\\boxed{28 percent}", "$28\\%$", True), ("\\boxed{10\\%}", "0.1", True),
    ("\\boxed{10\\%}", "0.2", False), ("\\boxed{125}", "$125$ miles", True), ("\\boxed{12}", "\\textbf{(C) } 12", True),
    ("\\boxed{C}", "\\textbf{(C) } 12", True), ("\\boxed{13}", "\\textbf{(C) } 12", False),
    ("\\boxed{20\\%}", "the percentage is $x = \\frac15$, or $\\boxed{20}$ percent.", True),
    # relations: intervals, inequalities in every spelling, linear ones, absolute values, \ne
    ("\\boxed{5 \\geq x}", "x \\le 5", True), ("\\boxed{x <= 5}", "(-\\infty, 5]", True), ("\\boxed{5 \\ge x}", "x < 5", False),
    ("\\boxed{x \\in [-2, 7]}", "-2 \\le x \\le 7", True), ("\\boxed{x \\in (-2, 7]}", "-2 \\le x \\le 7", False),
    ("\\boxed{-3x > 6}", "x < -2", True), ("\\boxed{-3x > 6}", "x > -2", False), ("\\boxed{2x + 1 \\le 7}", "(-\\infty, 3]", True),
    ("\\boxed{x != 3}", "(-\\infty,3)\\cup(3,\\infty)", True), ("\\boxed{x \\neq 3}", "x \\ne 4", False),
    ("\\boxed{|x| < 2}", "(-2, 2)", True), ("\\boxed{|x| \\le 2}", "(-2, 2)", False),
    ("\\boxed{1 \\le |z| \\le 2}", "[-2,-1]\\cup[1,2]", True), ("\\boxed{1 \\le |z| \\le 2}", "[1,2]", False),
    ("\\boxed{\\pm 2}", "\\{-2, 2\\}", True), ("\\boxed{\\pm 2}", "2", False),
    ("\\boxed{x = 11}", "11", True), ("\\boxed{k = \\frac13}", "1/3", True), ("\\boxed{x + y = 11}", "11", False),
    ("\\boxed{x = 5 + 5 + 1 = 11}", "11", True), ("\\boxed{x = 2 + 2 = 5}", "4", False),
    ("\\boxed{x = \\frac13 \\approx 0.33}", "\\frac13", True), ("\\boxed{x = \\frac13 \\approx 0.33}", "0.33", False),
    ("\\boxed{V_1 : V_2 = 11:21}", "11:21", True), ("\\boxed{|AB| = 4}", "4", True),
    # several boxes and unordered solution sets; more or fewer solutions is wrong
    ("So $\\boxed{2}$ and $\\boxed{-5}$.", "-5, 2", True), ("So $\\boxed{2}$.", "-5, 2", False), ("\\boxed{2} and \\boxed{-5}", "2", False),
    ("\\boxed{2}, \\boxed{-5}, \\boxed{3}", "-5, 2", False), ("First \\boxed{3}, then after checking \\boxed{4}", "4", True),
    ("\\boxed{(7,11), (11,7)}", "(11,7)or(7,11)", True), ("\\boxed{(7,11)}", "(11,7)or(7,11)", False),
    ("\\boxed{-5, 2} or \\boxed{2}", "2, -5", False), ("\\boxed{1, 2}", "\\boxed{1}\\boxed{2}", True),
    ("\\boxed{1, 2, 2}", "1, 2", True), ("\\boxed{1, 2, 2}", "1, 2, 3", False),  # a repeated root is one solution
    ("\\boxed{p = 5, q = 2}", "(5, 2)", True), ("\\boxed{p = 5, q = 2}", "(2, 5)", False),
    ("\\boxed{a_{37} = 19, a_3 = 2}", "a_3 = 2, a_{37} = 19", True), ("\\boxed{a_{37} = 2, a_3 = 19}", "a_3 = 2, a_{37} = 19", False),
    ("\\boxed{\\{-10, -11, -12\\}}", "-12;-11;-10", True), ("\\boxed{(0,-2,0),(0,0,0)}", "(0;0;0),(0;-2;0)", True),
    ("\\boxed{{1,3}}", "(1,3)", True), ("\\boxed{{1,3}}", "(3,1)", False),
    # matrices in every environment, and matrix arithmetic
    ("\\boxed{\\left[\\begin{array}{cc}1 & 2 \\\\ 3 & 4\\end{array}\\right]}", "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", True),
    ("\\boxed{\\begin{bmatrix}1 & 2 \\\\ 3 & 4\\end{bmatrix}}", "\\begin{pmatrix}1 & 3 \\\\ 2 & 4\\end{pmatrix}", False),
    ("$\\begin{pmatrix}1 & 1 \\\\ 0 & 1\\end{pmatrix} \\begin{pmatrix}1 & 0 \\\\ 1 & 1\\end{pmatrix}$", "\\begin{pmatrix}2 & 1 \\\\ 1 & 1\\end{pmatrix}", True),
    ("$\\begin{pmatrix}1 & 0 \\\\ 1 & 1\\end{pmatrix} \\begin{pmatrix}1 & 1 \\\\ 0 & 1\\end{pmatrix}$", "\\begin{pmatrix}2 & 1 \\\\ 1 & 1\\end{pmatrix}", False),
    # pairs from graders' test suites that a first version missed (held out while it was written)
    ("\\boxed{f'}", "f'", True), ("\\boxed{f}", "f'", False), ("\\boxed{185\\\\}", "185", True), ("\\boxed{\\{1, 2\\}}", "1, 2", True),
    ("\\boxed{\\frac{\\sqrt{3}}{3} \\approx 0.577}", "\\frac{\\sqrt3}{3}", True), ("\\boxed{\\frac{\\sqrt{3}}{3} \\approx 0.577}", "0.577", False),
    ("\\boxed{C. x = 42}", "C", True), ("\\boxed{D. x = 42}", "C", False), ("\\boxed{42}", "C. x = 42", True),
    # sums, and powers too large to compute that still cancel
    ("\\boxed{\\sum_{k=1}^{n} k}", "\\frac{n(n+1)}{2}", True), ("\\boxed{\\sum_{k=1}^{n} k}", "\\frac{n(n-1)}{2}", False),
    ("\\boxed{\\sum_{k=1}^{10} k^2}", "385", True), ("\\boxed{10^{10^{10}} - 10^{10^{10}}}", "0", True),
    ("\\boxed{10^{10^{10}} - 10^{10^{10}}}", "1", False), ("\\boxed{2^{2^{30}}}", "4^{2^{29}} + 1", False),
]

# Inputs that used to run for minutes or hours (C-level bignum work, symbolic expansion, primality
# tests): each must come back false, quickly, and without an internal error.
SLOW_BEFORE = [
    ("\\boxed{2^{x^{1000}}}", "x"),
    ("\\boxed{x^{x^{x^{x^{x}}}}}", "x"),
    ("\\boxed{e^{e^{e^{e^{x}}}}}", "x"),
    ("\\boxed{((((x^{x})^{x})^{x})^{x})^{x}}", "x"),
    ("\\boxed{\\binom{x}{2^{100}}}", "0"),
    ("\\boxed{\\binom{\\pi}{999}}", "1"),
    ("\\boxed{\\binom{0.5^{999}}{1000}}", "1"),
    ("\\boxed{|\\ln(5000!)|}", "1"),
    ("\\boxed{|-\\log_{(1000)!} \\sqrt[e]{0.5}|}", "1"),
    ("\\boxed{\\lfloor e^{999} \\rfloor}", "0"),
    ("\\boxed{\\lfloor x^{999} \\rfloor}", "x"),
    ("\\boxed{|\\exp(\\frac{\\sqrt[3]{a}}{\\sqrt[x]{y^{2}}}^{999})|}", "0"),
    ("\\boxed{\\cos(2^{199999})}", "0"),
    ("\\boxed{(2^{100}\\pi)^{1000}}", "0"),
]


@pytest.mark.parametrize(("completion", "gold", "expected"), CASES)
def test_table(completion: str, gold: str, expected: bool) -> None:
    assert verify(completion, gold) is expected


@pytest.mark.parametrize(("completion", "gold", "expected"), CASES_12)
def test_issue_12_styles(completion: str, gold: str, expected: bool) -> None:
    verdict = check(completion, gold)
    assert verdict.error is None
    assert verdict.correct is expected


EXTRACTED = [
    ("Answer \\( 9 \\)", "\\( 9 \\)"),
    ("Final Answer: The largest $n$ is 34. I hope it is correct.", "34"),
    ("Final Answer: Jane started growing Sphere 3 hours ago.", "3"),
    ("Final Answer: The final answer is $10,455$. I hope it is correct.", "$10,455$"),
    ("**Final Answer**\n\\[\n\\boxed{840}\n\\]", "840"),
    ("<answer>\\boxed{7}</answer>", "7"),
    ("\\boxed{5}. The answer is correct, as $2 + 3 = 5$.", "5"),
    ("The answer is correct.", None),
    ("\\boxed{5}\n\n**Final Answer**", "5"),
    ("\\boxed{1}, \\boxed{2} and \\boxed{3}", "1, 2, 3"),
    ("\\boxed{1} \\text{ for part (a) and } \\boxed{2}", "1, 2"),
    ("\\boxed{1} no no no \\boxed{2}", "2"),
    ("\\boxed{\\boxed{42}}", "42"),
    ("$y_1 = \\boxed{x}$ and $y_2 = \\boxed{2x}$", "x, 2x"),
    ("\\boxed{5}<|im_start|>user\n\\boxed{6}", "5"),
    ("so $x = 7$. I hope this helps!", "$x = 7$"),
    ("so $x = 7$. Then we add 3", None),
    ("Is it $x = 7$? Let me check.", None),
    ("Therefore, the probability is 2/3.", "2/3"),
    ("the number is not 10 which is 1,000.99", "1,000.99"),
    ("We add 40 and 2 to get 42", None),
    (".4", ".4"),
    ("\\[Answer: 241\\]", "241"),
]


@pytest.mark.parametrize(("completion", "expected"), EXTRACTED)
def test_lenient_extraction(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


def test_unmarked_answers_need_a_complete_completion() -> None:
    for text in ("so $x = 7$.", "Therefore, the probability is 2/3.", ".4", "Hence\n\\[\n15\n\\]"):
        assert extract_answer(text) is not None
        assert extract_answer(text, truncated=True) is None
    assert extract_answer("The answer is 7", truncated=True) == "7"  # an explicit marker still counts


@pytest.mark.parametrize(
    ("completion", "lenient", "strict"),
    [
        ("\\boxed{7}", "7", "7"),
        ("#### 7", "7", "7"),
        ("So the answer is $7$.", "$7$", "$7$"),
        ("Final Answer: The final answer is $7$. I hope it is correct.", "$7$", "$7$"),
        ("Answer: 7", "7", None),
        ("Answer $7$", "$7$", None),
        ("**7**", "7", None),
        ("<answer>7</answer>", "7", None),
        ("so $x = 7$.", "$x = 7$", None),
        ("Therefore, the total is 7.", "7", None),
        ("7", "7", None),
    ],
)
def test_strict_mode_reads_only_boxes_hashes_and_the_answer_is(completion: str, lenient: str | None, strict: str | None) -> None:
    assert extract_answer(completion) == lenient
    assert extract_answer(completion, mode="strict") == strict
    assert verify(completion, "7", policy=VerifyPolicy(mode="strict")) is (strict is not None)


def test_bad_modes_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'loose'"):
        extract_answer("\\boxed{1}", mode="loose")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'loose'"):
        VerifyPolicy(mode="loose")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'half'"):
        VerifyPolicy(percent="half")  # type: ignore[arg-type]


def test_gold_goes_through_the_completion_path() -> None:
    assert gold_answer("\\boxed{1}\\boxed{2}") == "1, 2"
    assert gold_answer("\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).") == "1, -2"
    assert gold_answer("42") == "42"
    assert gold_answer("(11,7)or(7,11)") == "(11,7), (7,11)"
    assert gold_answer("\\text{odd or even}") == "\\text{odd or even}"  # words, not a list of values
    solution = "Each side is 4, so the area is $4^2 = 16$. Final Answer: The final answer is $16$. I hope it is correct."
    assert gold_answer(solution) == "$16$"
    assert verify("\\boxed{16}", solution) and not verify("\\boxed{4}", solution)


def _counted_check(completion: str, gold: str) -> tuple[Verdict, int]:
    """``check(completion, gold)`` and how many Python function calls it made: a work count that,
    unlike a clock, does not depend on the machine or its load."""
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(profile)
    try:
        verdict = check(completion, gold)
    finally:
        sys.setprofile(None)
    return verdict, calls


MAX_CALLS_PER_CHECK = 500_000  # about 6x the most any case below needs; an explosion needs millions


@pytest.mark.parametrize(("completion", "gold"), SLOW_BEFORE)
def test_inputs_that_explode_are_refused_with_bounded_work(completion: str, gold: str) -> None:
    check("\\boxed{0}", "1")  # warm caches, so the count below is this case's own work
    verdict, calls = _counted_check(completion, gold)
    assert calls < MAX_CALLS_PER_CHECK
    assert verdict == Verdict(False, verdict.answer, None)
    assert check(completion, completion[7:-1]).error is None  # the same text as gold: no error either


def test_extract_candidates_returns_a_hedges_options() -> None:
    assert extract_candidates("So \\boxed{3} or \\boxed{4}.") == ("3", "4")
    assert extract_candidates("The answer is $3$ or $4$.") == ("$3$", "$4$")
    assert extract_candidates("The answer is 7.") == ("7",)
    assert extract_candidates("no answer here") == ()
    assert extract_answer("The answer is $3$ or $4$.") is None


def test_large_integers_skip_primality_tests_but_small_ones_do_not() -> None:
    import sympy

    assert sympy.Integer(2**127 - 1).is_prime is True
    assert sympy.Integer(2**127 + 1).is_composite is True
    assert sympy.Integer(2**5000 + 1).is_prime is None
    assert sympy.Integer(2**5000 + 1).is_positive is True


def test_extract_answer_prefers_text_after_think_and_ignores_after_end_of_turn() -> None:
    assert extract_answer("<think>maybe \\boxed{1}</think> so \\boxed{2}") == "2"
    assert extract_answer("<think>only \\boxed{1}</think>") == "1"
    assert extract_answer("\\boxed{2}<|eot_id|>\\boxed{3}") == "2"
    assert extract_answer("<think>we get 42") is None
    assert extract_answer("...the total is 42.\nSo the answer is 42.", truncated=True) == "42"
    assert extract_answer("Thus the total is 42.", truncated=True) is None


def test_normalize_reports_percent_and_strips_markup() -> None:
    assert normalize_answer("$50\\%$.") .text == "50"
    assert normalize_answer("$50\\%$.").percent
    assert normalize_answer("\\mathbf{\\text{Evelyn}}").text == "Evelyn"
    assert normalize_answer("１,０００").text == "1000"


def test_policies() -> None:
    assert verify("\\boxed{50\\%}", "50")
    assert not verify("\\boxed{50\\%}", "50", policy=VerifyPolicy(percent="strict"))
    assert not verify("\\boxed{0.5}", "50\\%")
    assert verify("\\boxed{0.5}", "50\\%", policy=VerifyPolicy(percent="either"))
    rounded = VerifyPolicy(rounded_decimals=True)
    assert verify("\\boxed{3.14}", "\\pi", policy=rounded)
    assert not verify("\\boxed{3.15}", "\\pi", policy=rounded)
    assert not verify("\\boxed{3.1}", "\\pi", policy=rounded)  # fewer than min_rounded_digits
    assert not verify("\\boxed{0.33}", "\\frac13", policy=rounded)  # a rational gold must be exact


def test_gold_helpers() -> None:
    assert gsm8k_gold("He pays 2*3=<<2*3=6>>6.\n#### 6,600") == "6600"
    assert strip_calculator_annotations("48/2 = <<48/2=24>>24") == "48/2 = 24"
    with pytest.raises(ValueError):
        gsm8k_gold("no marker")


def test_corpus_accuracy_and_false_positives_per_category() -> None:
    cases = load_corpus()
    assert len(cases) >= 3000
    by_category: dict[str, list[dict]] = {}
    for case in cases:
        by_category.setdefault(case["category"], []).append(case)
    for category, group in by_category.items():
        verdicts = [verify(c["completion"], c["gold"], truncated=c.get("truncated", False)) for c in group]
        wrong = [c["id"] for c, v in zip(group, verdicts) if v != c["equivalent"]]
        false_positives = [c["id"] for c, v in zip(group, verdicts) if v and not c["equivalent"]]
        assert 1 - len(wrong) / len(group) >= 0.99, (category, wrong)
        assert len(false_positives) <= 0.002 * len(group), (category, false_positives)


def test_corpus_draws_on_sources_outside_the_project() -> None:
    cases = load_corpus()
    assert all(case.get("source") for case in cases)
    outside = [c for c in cases if not c["source"].startswith("lightning_grpo")]
    assert len(outside) >= 300
    assert len({c["source"].split("::")[0].split(",")[0] for c in outside}) >= 10
    relabelled = [c for c in outside if "relabelled" in c["source"]]
    assert relabelled and all(re.search(r"relabelled [01]->[01]: \S", c["source"]) for c in relabelled)
    styles = " ".join(c["completion"] for c in cases if c["category"] == "model_style")
    for marker in ("<think>", "</think>", "<|im_end|>", "<|im_start|>", "<|eot_id|>", "Final Answer:", "<answer>", "</s>"):
        assert marker in styles, marker


def test_corpus_covers_every_category_the_issue_names() -> None:
    cases = load_corpus()
    by_category: dict[str, list[dict]] = {}
    for case in cases:
        by_category.setdefault(case["category"], []).append(case)
    assert {"gsm8k", "math500", "symbolic", "unicode", "structure", "extraction", "adversarial", "near_miss"} <= set(by_category)
    for category in ("gsm8k", "math500"):  # golds with right and wrong answers in several styles
        labels = [c["equivalent"] for c in by_category[category]]
        assert labels.count(True) >= 100 and labels.count(False) >= 100
        assert sum("<think>" in c["completion"] for c in by_category[category]) >= 20
        assert sum("<|im_end|>" in c["completion"] for c in by_category[category]) >= 20
    adversarial = [c["completion"] for c in by_category["adversarial"]]
    assert "" in adversarial
    assert max(map(len, adversarial)) >= 1_000_000
    assert any(text.count("\\frac{1}{") >= 1000 or text.count("(") >= 1000 for text in adversarial)
    assert any("Ignore all previous instructions" in text for text in adversarial)
    assert any(c.get("truncated") for c in cases)


def test_every_adversarial_case_is_checked_with_bounded_work() -> None:
    for case in [c for c in load_corpus() if c["category"] == "adversarial"]:
        verdict, calls = _counted_check(case["completion"], case["gold"])
        assert calls < MAX_CALLS_PER_CHECK, case["id"]
        assert verdict.error is None, (case["id"], verdict.error)


def test_never_raises_on_random_text() -> None:
    rng = random.Random(0)
    alphabet = list("0123456789+-*/^_{}()[]|!=<>,.$%\\ abcxyz") + ["\\frac", "\\sqrt", "\\boxed{", "\\left(", "\\pi", "½", "√"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        verdict = check(f"\\boxed{{{text}}}", text[::-1])
        assert verdict.error is None, (text, verdict.error)


def test_verify_from_a_worker_thread() -> None:
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.extend([verify("\\boxed{\\frac{2}{4}}", "0.5"), verify("\\boxed{3}", "4")]))
    thread.start()
    thread.join(30)
    assert results == [True, False]
