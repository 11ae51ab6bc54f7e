"""The answer-finding policy of docs/verifier.md, rule by rule: each rule's family of forms is found,
and each rule's hard negatives (a near miss that must stay wrong) stay wrong. Also the explain tool."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from lightning_grpo.rewards.explain import main as explain_main
from lightning_grpo.rewards.extraction import find_answer
from lightning_grpo.rewards.normalize import normalize_answer, words_to_number
from lightning_grpo.rewards.verifier import check, equivalent

# (completion, gold, correct): for every rule, forms it must find and near misses it must refuse
RULES = {
    "answer markers in other languages": [
        ("Ответ: 95 минут", "95", True),
        ("Пошаговое решение: 58 - 23 = 35. Ответ — 33.", "33", True),
        ("答案是 42", "42", True),
        ("所以答案是 $\\frac{3}{4}$。", "0.75", True),
        ("答えは9個です。", "9", True),
        ("Die Antwort lautet 17.", "17", True),
        ("Réponse : 17", "17", True),
        ("La respuesta es 17.", "17", True),
        ("Resposta: 17", "17", True),
        ("La risposta è 17.", "17", True),
        ("정답은 17입니다.", "17", True),
        ("Jibu ni 17.", "17", True),
        ("তাই 20 - 12 = 8টি। উত্তর হল 8।", "8", True),
        ("Ответ: 96 минут", "95", False),
        ("Ответ: 17 или 18", "17", False),  # a hedge in Russian
        ("Ответ: 17 или больше", "17", False),  # "17 or more": a qualifier, though no second number
        ("答案是 17 或更多", "17", False),
        ("Réponse : 17 ; 18", "17", False),  # a second number after the value
        ("答案是 17 或 18", "17", False),  # a hedge in Chinese
        ("La respuesta es 17 o 18.", "17", False),
        ("Die Antwort ist nicht 17, sondern 18.", "17", False),  # a negation is no value
        ("Antwort: Leah hat 32 Pralinen und ihre Schwester 42.", "32", False),  # prose after the marker
    ],
    "GSM8K few-shot 'A:' line": [
        ("Natalia sold 48/2 = 24 clips in May.\nA: 72", "72", True),
        ("A: $18", "18", True),
        ("Natalia sold 48/2 = 24 clips in May.\nA: 72", "24", False),
        ("A: 6250 or 6300", "6250", False),
        ("A: 1. First, find the cost.\n2. Then add the tax.", "1", False),  # a numbered step, not a value
    ],
    "GLM box": [
        ("The area is 42.<|begin_of_box|>42<|end_of_box|>", "42", True),
        ("<|begin_of_box|>\\frac{1}{2}<|end_of_box|>", "0.5", True),
        ("<|begin_of_box|>24<|end_of_box|>", "42", False),
        ("<|begin_of_box|>3<|end_of_box|> or <|begin_of_box|>4<|end_of_box|>", "3", False),
    ],
    "final claim of prose": [
        ("Joan has 40 balloons.\nMelanie has 41.\n\nThat means they have a total of 81 blue balloons.", "81", True),
        ("1/3 of 3 is 1, so she sends 1 email a day to her boyfriend.", "1", True),
        ("Finally, the total amount of water is 6 + 9 = 15 liters.", "15", True),
        ("So the total is one hundred and forty.", "140", True),
        ("So they have 108 packs in total. I hope this helps!", "108", True),
        ("After 1 day of harvest, they will have 65", "65", False),  # cut off: no full stop
        ("That means they have a total of 65", "65", False),  # cut off: no full stop
        ("Four containers were imported and two were returned.", "4", False),  # two numbers
        ("Is the total 28?", "28", False),  # a question back
        ("If the price includes tax, the total is 18.", "18", False),  # a condition
        ("So the total is probably 18.", "18", False),  # a hedge
        ("The code printed 40.0, but it double counts; the correct count is 38.", "40", False),
    ],
    "program output at the end": [
        ("```python\nprint(6 * 7)\n```\n```output\n42\n```", "42", True),
        ("```python\nprint(6 * 7)\n```\n```output\n42\n```\nSo 42 spools are blue.", "42", True),
        ("```python\nprint(6 * 7)\n```\n```output\n42\n```\nWait, the code has a bug.", "42", False),
        ("```python\nprint((3, 4))\n```\n```output\n(3, 4)\n```", "3", False),
        ("```python\nprint(6 * 7)\n```\n```output\n41\n```", "42", False),
    ],
    "<answer> tag holding prose": [
        ("</think> <answer> She earns $2 \\times 9 = \\$18 $. </answer>", "18", True),
        ("</think> <answer> Toulouse has 160 sheep, Charleston has 80 sheep. </answer>", "160", False),
        ("</think> <answer> x = 2, x = -5 </answer>", "2, -5", True),  # a list, not prose
    ],
    "a parenthesis inside 'the answer is'": [
        ("Therefore, the answer (arabic numerals) is 47.", "47", True),
        ('The answer (words) is "forty-seven."', "47", True),
        ("Therefore, the answer (arabic numerals) is 47.", "74", False),
    ],
    "number words": [
        ("The answer is forty-seven.", "47", True),
        ("The answer is twenty-two thousand five hundred.", "22500", True),
        ("\\boxed{\\text{Four}}", "4", True),
        ("The answer is one hundred and forty-one.", "140", False),
        ("The answer is forty-seven.", "74", False),
        ("\\boxed{\\text{one of them}}", "1", False),  # "of them" is no unit
    ],
    "words against \\text{} golds": [
        ("The answer is sunday.", "\\text{Sunday}", True),
        ("\\boxed{\\text{Devon}}", "Devon", True),
        ("The answer is Monday.", "\\text{Sunday}", False),
        ("The answer is North-East.", "\\text{North}", False),
    ],
    "scientific notation": [
        ("\\boxed{3.81e-4}", "0.000381", True),
        ("The answer is 3.81E-4.", "0.000381", True),
        ("\\boxed{6E3}", "6000", True),
        ("\\boxed{3.81e-5}", "0.000381", False),
        ("\\boxed{3.81e4}", "0.000381", False),
        ("\\boxed{2e-1}", "0.2", False),  # 2e - 1 with Euler's e: no decimal point, lower-case e
    ],
    "repeating decimals": [
        ("\\boxed{0.\\overline{5}}", "\\frac{5}{9}", True),
        ("\\boxed{0.1\\overline{6}}", "\\frac{1}{6}", True),
        ("\\boxed{-1.\\overline{3}}", "-\\frac43", True),
        ("\\boxed{0.\\overline{5}}", "0.5", False),
        ("\\boxed{0.\\overline{5}}", "0.56", False),
        ("\\boxed{0.5\\overline{4}}", "\\frac{5}{9}", False),
    ],
    "clock times": [
        ("The train arrives at 20:34:00.", "20:34", True),
        ("\\boxed{20:34}", "20:34:00", True),
        ("\\boxed{20:34:30}", "20:34", False),
        ("\\boxed{10:17:00}", "20:34", False),  # a time is no ratio: 10:17 is not 20:34
    ],
    "products of powers side by side": [
        ("\\boxed{2^6 3^5 5^4}", "2^6 \\cdot 3^5 \\cdot 5^4", True),
        ("\\boxed{2^6\\, 3^5}", "15552", True),
        ("\\boxed{2^6 3^5 5^3}", "2^6 \\cdot 3^5 \\cdot 5^4", False),
        ("\\boxed{2 3}", "6", False),  # two numbers side by side are no product
        ("\\boxed{2^6 3}", "192", False),  # only powers side by side multiply
    ],
    "signs survive thousands separators": [
        ("\\boxed{-1,234}", "-1234", True),
        ("\\boxed{-1,234}", "1234", False),
        ("The answer is −1,234.", "1234", False),
        ("#### -1,234,567", "1234567", False),
    ],
}
CASES = [(rule, *case) for rule, cases in RULES.items() for case in cases]


@pytest.mark.parametrize(("rule", "completion", "gold", "correct"), CASES)
def test_each_rule_finds_its_family_and_refuses_its_near_misses(
    rule: str, completion: str, gold: str, correct: bool
) -> None:
    assert check(completion, gold).correct is correct, (rule, find_answer(completion))


def test_every_rule_has_a_hard_negative() -> None:
    for rule, cases in RULES.items():
        assert any(not correct for _, _, correct in cases), rule
        assert any(correct for _, _, correct in cases), rule


def test_a_minus_sign_is_never_dropped_with_thousands_separators() -> None:
    """Kills the mutant that drops the sign when it removes the commas of ``-1,234``."""
    assert normalize_answer("-1,234").text == "-1234"
    assert normalize_answer("-1,234,567.5").text == "-1234567.5"
    assert normalize_answer("+1 234").text == "+1234"
    assert not equivalent("-1,234", "1234") and equivalent("-1,234", "-1234")


def test_the_fresh_corpus_split_is_the_one_drawn_before_scoring() -> None:
    """Guards the held-out discipline: the stored split is the seeded draw, half and half, and every
    case carries a label, a category and where it comes from."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from build_verifier_corpus import FRESH, fresh_split, load_corpus

    cases = load_corpus(FRESH)
    assert [c["split"] for c in cases] == fresh_split(len(cases))
    assert 0.4 < sum(c["split"] == "holdout" for c in cases) / len(cases) < 0.6
    categories = {c["category"] for c in cases}
    assert categories == {"grade_school_real", "tool_integrated", "other_languages", "other_graders", "hard_variant"}
    assert all(isinstance(c["equivalent"], bool) and c["source"] and c["id"].startswith("fresh-") for c in cases)
    assert len({c["id"] for c in cases}) == len(cases)


def test_words_to_number_reads_only_number_words() -> None:
    assert words_to_number("one hundred and forty") == 140
    assert words_to_number("Forty-Seven") == 47
    assert words_to_number("two million three hundred thousand and five") == 2_300_005
    assert words_to_number("zero") == 0
    assert words_to_number("forty apples") is None
    assert words_to_number("and five") is None
    assert words_to_number("") is None


def test_find_answer_names_the_rule() -> None:
    assert find_answer("Ответ: 95 минут").rule == "marker 'Ответ:'"
    assert find_answer("So they have 81 balloons in all, she said.").rule == "final claim of prose"
    assert find_answer("```python\nprint(2)\n```\n```output\n2\n```").rule == "program output at the end"
    assert find_answer("A: 72").rule == "'A:' line"
    hedge = find_answer("The answer is 3 or 4.")
    assert (hedge.answer, hedge.rule, hedge.options) == (None, "hedge", ("3", "4"))
    assert find_answer("So they have 81 balloons.", truncated=True).rule == "none"


def _run_explain(argv: list[str], stdin: str = "") -> tuple[int, str]:
    out, old_out, old_in = io.StringIO(), sys.stdout, sys.stdin
    sys.stdout, sys.stdin = out, io.StringIO(stdin)
    try:
        code = explain_main(argv)
    finally:
        sys.stdout, sys.stdin = old_out, old_in
    return code, out.getvalue()


def test_explain_prints_answer_rule_normal_forms_and_verdict() -> None:
    code, text = _run_explain(["\\boxed{-1,234}", "1234", "--explain"])
    assert code == 0
    assert "answer:      '-1,234'  (rule: \\boxed{})" in text
    assert "normalised:  answer '-1234'" in text and "normalised:  gold '1234'" in text
    assert text.rstrip().endswith("verdict:     incorrect")
    code, text = _run_explain(["Ответ: 95 минут", "95", "--explain"])
    assert code == 0 and "rule: marker 'Ответ:'" in text and text.rstrip().endswith("verdict:     correct")


def test_explain_says_why_there_is_no_answer() -> None:
    assert "a hedge between '3', '4'" in _run_explain(["The answer is 3 or 4.", "3", "--explain"])[1]
    truncated = _run_explain(["So they have 81 balloons.", "81", "--explain", "--truncated"])[1]
    assert "truncated" in truncated and "verdict:     incorrect" in truncated
    assert _run_explain(["So they have 81 balloons.", "81"]) == (0, "correct\n")


def test_explain_reads_stdin_and_files_and_names_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_explain(["-", "7"], stdin="The answer is 7.") == (0, "correct\n")
    path = tmp_path / "completion.txt"
    path.write_text("\\boxed{8}", encoding="utf-8")
    assert _run_explain([f"@{path}", "7"]) == (0, "incorrect\n")
    assert explain_main([f"@{tmp_path / 'missing.txt'}", "7"]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert explain_main(["only-one-argument"]) == 2
