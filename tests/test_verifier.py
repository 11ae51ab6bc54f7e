"""The math verifier: extraction, normalisation, equivalence, guards, and the labelled corpus."""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from build_verifier_corpus import load_corpus  # noqa: E402

from lightning_grpo.prompts import gsm8k_gold, strip_calculator_annotations  # noqa: E402
from lightning_grpo.rewards import extract_answer, verify  # noqa: E402
from lightning_grpo.rewards.normalize import normalize_answer  # noqa: E402
from lightning_grpo.rewards.verifier import VerifyPolicy, check  # noqa: E402

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
]


@pytest.mark.parametrize(("completion", "gold", "expected"), CASES)
def test_table(completion: str, gold: str, expected: bool) -> None:
    assert verify(completion, gold) is expected


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


def test_corpus_accuracy_and_false_positives() -> None:
    cases = load_corpus()
    assert len(cases) >= 600
    wrong = [c["id"] for c in cases if verify(c["completion"], c["gold"], truncated=c.get("truncated", False)) != c["equivalent"]]
    false_positives = [c["id"] for c in cases if not c["equivalent"] and c["id"] in wrong]
    assert 1 - len(wrong) / len(cases) >= 0.985, wrong
    assert len(false_positives) <= 0.003 * len(cases), false_positives


def test_every_adversarial_case_returns_quickly() -> None:
    for case in [c for c in load_corpus() if c["category"] == "adversarial"]:
        start = time.perf_counter()
        verdict = check(case["completion"], case["gold"])
        assert time.perf_counter() - start < 2.0, case["id"]
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
