"""The calculator tool: one arithmetic expression in, its value out, never through ``eval``.

Expressions are read by the project's safe parser
(:func:`lightning_grpo.rewards.verifier.parse_expression`, a recursive-descent parser that builds
sympy objects directly under size guards), after three spellings are translated: ``**`` is ``^``,
``×``/``÷`` are ``*``/``/``, and a number in scientific notation ``1.5e-3`` is ``1.5*10^(-3)``.
Supported: ``+ - * / ^``, parentheses, implicit products (``2(3+4)``, ``2pi``), ``sqrt``, ``!``,
``pi``, ``e``, ``sin``/``cos``/``tan``/``ln``/``log``/``exp`` and LaTeX spellings (``\\frac``,
``\\cdot``). Not supported: ``%``, ``//``, comparisons, variables (an unknown name is an error).

Output rule: an integer is written exactly, in plain digits, when it has at most
:data:`MAX_EXACT_DIGITS` digits; any other real value (a fraction, a root, π, a larger integer) is
written with :data:`SIGNIFICANT_DIGITS` significant digits, trailing zeros dropped, and in
scientific notation (``1.5e+120``) when it is very large or very small. A complex or infinite
value, an unreadable expression, a division by zero and a result too large to compute are errors
with a one-line message.

Work is bounded by the parser's guards (at most 2,000 characters, integers of at most 200,000
bits, factorials of at most 5,000, exponents of non-rationals at most 1,000; a larger rational
power such as ``9^9^9`` is never computed) and, here, by refusing to evaluate a function such as
``sin`` at an argument beyond 2^:data:`MAX_FUNCTION_ARGUMENT_BITS` (which would need that many bits
of precision).
"""

from __future__ import annotations

import re
import time

import mpmath
import sympy

from lightning_grpo.environments.tool import Tool
from lightning_grpo.environments.tool_result import ToolResult
from lightning_grpo.rewards.verifier import Unreadable, parse_expression

MAX_EXACT_DIGITS = 100
SIGNIFICANT_DIGITS = 12
MAX_INPUT_CHARS = 500
MAX_FUNCTION_ARGUMENT_BITS = 1_000
_SCIENTIFIC = re.compile(r"(?<![\w.])(\d+\.?\d*|\.\d+)[eE]([+-]?\d+)(?!\w)")
_HUGE_PREFIX = "huge"  # the parser's name for a power too large to compute


class Calculator(Tool):
    """Evaluates one arithmetic expression per call; stateless and picklable."""

    name = "calculator"
    argument = "expression"  # in a JSON tool call
    description = (
        "Evaluate one arithmetic expression, e.g. 123*456 or (2^10 - 1)/3 or sqrt(2): "
        "+ - * / ^ ( ) sqrt ! pi e; integers exact, other values to 12 significant digits."
    )

    def run(self, source: str) -> ToolResult:
        """The value of ``source`` as text (see the module's output rule), or a one-line error."""
        start = time.perf_counter()
        text, error = _evaluate(source)
        return ToolResult(text=text, error=error, seconds=time.perf_counter() - start)

    def run_many(self, sources: list[str]) -> list[ToolResult]:
        """One result per source, in order (sequentially: a call takes microseconds to milliseconds)."""
        return [self.run(source) for source in sources]

    def close(self) -> None:
        """Nothing to release."""


def _evaluate(source: str) -> tuple[str, str | None]:
    if not isinstance(source, str):
        return f"expected an expression as text, got {type(source).__name__}", "syntax"
    expression = source.strip()
    if not expression:
        return "empty expression", "syntax"
    if len(expression) > MAX_INPUT_CHARS:
        return f"expression too long ({len(expression)} characters, at most {MAX_INPUT_CHARS})", "syntax"
    expression = expression.replace("**", "^").replace("×", "*").replace("÷", "/")
    expression = _SCIENTIFIC.sub(r"(\1*10^(\2))", expression)
    try:
        value = parse_expression(expression)
    except Unreadable as exc:
        message = str(exc)
        if message == "division by zero":
            return "division by zero", "error"
        if "large" in message or "out of range" in message:
            return f"result too large to compute ({message})", "error"
        if type(exc).__name__ == "_TextAnswer":  # a word the parser does not know
            message = f"unknown word {message!r}"
        return f"cannot read {source.strip()!r} as an arithmetic expression ({message})", "syntax"
    except Exception as exc:  # noqa: BLE001 - a tool never raises into the rollout
        return f"cannot evaluate {source.strip()!r}: {type(exc).__name__}", "error"
    try:
        return _format(value), None
    except _NotANumber as exc:
        return str(exc), "error"
    except Exception as exc:  # noqa: BLE001
        return f"cannot evaluate {source.strip()!r}: {type(exc).__name__}", "error"


class _NotANumber(ValueError):
    pass


def _format(value: sympy.Expr) -> str:
    symbols = sorted(str(symbol) for symbol in value.free_symbols)
    if any(name.startswith(_HUGE_PREFIX) for name in symbols):
        raise _NotANumber("result too large to compute")
    if symbols:
        raise _NotANumber(f"unknown name(s) {', '.join(symbols)}: the calculator takes numbers only")
    if value.is_Integer:
        integer = int(value)
        if integer.bit_length() <= 3.32 * MAX_EXACT_DIGITS and len(str(abs(integer))) <= MAX_EXACT_DIGITS:
            return str(integer)
        return _decimal(mpmath.mpf(integer))
    if value.is_Rational:
        with mpmath.workdps(SIGNIFICANT_DIGITS + 10):
            return _decimal(mpmath.mpf(value.p) / value.q)
    if value.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise _NotANumber("the result is not a finite number")
    for node in sympy.preorder_traversal(value):
        if isinstance(node, sympy.Function):
            for argument in node.args:
                if argument.is_number and _too_big(argument):
                    raise _NotANumber("argument too large to evaluate")
    number = value.evalf(SIGNIFICANT_DIGITS + 5)
    real, imaginary = number.as_real_imag()
    if not real.is_Float and not real.is_zero:
        raise _NotANumber("the result is not a finite number")
    if imaginary.is_Float and imaginary != 0:
        raise _NotANumber(f"the result is not a real number ({number})")
    if real.is_zero:
        return "0"
    return _decimal(mpmath.mpf(real._mpf_))


def _too_big(argument: sympy.Expr) -> bool:
    magnitude = abs(argument.evalf(5))
    return bool(magnitude.is_number and magnitude > sympy.Integer(2) ** MAX_FUNCTION_ARGUMENT_BITS)


def _decimal(number: mpmath.mpf) -> str:
    """``SIGNIFICANT_DIGITS`` significant digits, trailing zeros dropped; scientific notation beyond
    1e16 or below 1e-6 (mpmath's rule)."""
    if not mpmath.isfinite(number):
        raise _NotANumber("the result is not a finite number")
    text = mpmath.nstr(number, SIGNIFICANT_DIGITS, min_fixed=-6, max_fixed=16)
    mantissa, _, exponent = text.partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent}" if exponent else mantissa
