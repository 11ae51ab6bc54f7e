"""The calculator tool: exact integers, short decimals, clear errors, bounded work, never eval."""

from __future__ import annotations

import pickle
import threading

import pytest

from lightning_grpo.environments import Calculator, ToolResult
from lightning_grpo.environments import calculator as calculator_module


def value(expression: str) -> str:
    result = Calculator().run(expression)
    assert result.error is None, result
    return result.text


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("123*456", "56088"),
        ("(2 + 3) * 4 - 1", "19"),
        ("2^10", "1024"),
        ("2**10", "1024"),  # Python's spelling of a power
        ("12 × 3 ÷ 4", "9"),
        ("-7 + 2", "-5"),
        ("100!/98!", "9900"),
        ("3.5 * 2", "7"),
        ("1.5e3", "1500"),
        ("2.5e-3 * 2", "0.005"),
        ("2^100", "1267650600228229401496703205376"),  # 31 digits, exact
        ("10^99", "1" + "0" * 99),  # the largest integer written in full (100 digits)
    ],
)
def test_integers_are_exact(expression: str, expected: str) -> None:
    assert value(expression) == expected


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("7/2", "3.5"),
        ("1/3", "0.333333333333"),  # 12 significant digits
        ("2/3", "0.666666666667"),  # rounded, not cut
        ("1/7", "0.142857142857"),
        ("0.1 + 0.2", "0.3"),  # exact rationals: no binary floating-point error
        ("sqrt(2)", "1.41421356237"),
        ("pi", "3.14159265359"),
        ("e^2", "7.38905609893"),
        ("10^20/3", "3.33333333333e+19"),
        ("1/10^9", "1e-9"),
        ("10^100", "1e+100"),  # 101 digits: beyond the exact rule
    ],
)
def test_other_values_are_short_decimals(expression: str, expected: str) -> None:
    assert value(expression) == expected


def test_a_large_factorial_is_written_in_scientific_notation() -> None:
    assert value("5000!") == "4.22857792661e+16325"


@pytest.mark.parametrize(
    "expression, kind, words",
    [
        ("1/0", "error", "division by zero"),
        ("5/(3-3)", "error", "division by zero"),
        ("x + 1", "error", "unknown name(s) x"),
        ("sqrt(-1)", "error", "not a real number"),
        ("log(0)", "error", "not a finite number"),
        ("2 +* 3", "syntax", "cannot read '2 +* 3'"),
        ("", "syntax", "empty expression"),
        ("hello world", "syntax", "unknown word"),
        ("__import__('os').system('echo hacked')", "syntax", "cannot read"),
        ("1" * 501, "syntax", "too long"),
    ],
)
def test_bad_expressions_get_a_clear_error(expression: str, kind: str, words: str) -> None:
    result = Calculator().run(expression)
    assert result.error == kind, result
    assert words in result.text
    assert "\n" not in result.text


@pytest.mark.parametrize("expression", ["9^9^9", "10^(10^10)", "2^(2^40)", "(10^5000)!", "sin(2^100000)", "2^400000"])
def test_huge_work_is_refused_not_attempted(expression: str) -> None:
    outcome: list[ToolResult] = []
    worker = threading.Thread(target=lambda: outcome.append(Calculator().run(expression)), daemon=True)
    worker.start()
    worker.join(timeout=60)  # a hang detector, not a timing assertion: these are refused at once
    assert not worker.is_alive(), f"{expression} did not return"
    assert outcome[0].error == "error", outcome[0]
    assert "too large" in outcome[0].text


def test_a_power_just_within_the_bounds_is_computed() -> None:
    assert value("2^100000").startswith("9.99002093014e+30102")


def test_run_many_keeps_order() -> None:
    results = Calculator().run_many(["1+1", "1/0", "6*7"])
    assert [r.text for r in results] == ["2", "division by zero", "42"]
    assert [r.error for r in results] == [None, "error", None]


def test_non_text_input_is_an_error_not_an_exception() -> None:
    result = Calculator().run(42)  # type: ignore[arg-type]
    assert result.error == "syntax" and "int" in result.text


def test_the_calculator_is_picklable_and_describes_itself_in_one_line() -> None:
    calculator = pickle.loads(pickle.dumps(Calculator()))
    assert calculator.name == "calculator"
    assert calculator.description and "\n" not in calculator.description
    assert calculator.run("6*7").text == "42"
    calculator.close()


def test_the_digit_rule_follows_its_constants(monkeypatch) -> None:
    monkeypatch.setattr(calculator_module, "MAX_EXACT_DIGITS", 3)
    monkeypatch.setattr(calculator_module, "SIGNIFICANT_DIGITS", 4)
    assert value("999") == "999"
    assert value("10^20") == "1e+20"  # 21 digits: past the (patched) exact rule
    assert value("1/3") == "0.3333"
