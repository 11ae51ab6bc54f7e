"""Math answer verification: ``verify(completion, gold) -> bool``.

Pipeline: :func:`~lightning_grpo.rewards.extraction.extract_candidates` finds the final answer
(``lenient`` or ``strict``, :class:`VerifyPolicy` ``mode``); :func:`gold_answer` reads the gold
through the same path (all its boxes form its list, a worked solution gives its final answer, "or"
lists solutions); :func:`~lightning_grpo.rewards.normalize.normalize_answer` canonicalises both;
equal strings are equal (so ``10^{10^{10}}`` equals itself without evaluation); otherwise both are
read by a small recursive-descent LaTeX parser that builds sympy objects directly. Nothing is ever
passed to ``eval``/``sympify``/``parse_expr``. A hedge ("3 or 4") is an answer only when its options
are all the same value ("\\frac12 or 0.5"), or when the gold is exactly the collection of its single
options ("x = 3 or x = 4" for the solutions ``3, 4``).

Structures: ordered tuples and intervals (brackets must agree), unordered sets (``\\{…\\}``, bare
comma or semicolon lists, ``\\pm``; a repeated member counts once, so more or fewer solutions is
wrong), a bare list also equals a tuple in the same order, unions of intervals and points,
inequalities read as intervals (``\\le``/``<=``/``\\leq`` spellings, either side, linear in one
variable, ``|x| < a``, ``a \\le |x| \\le b``, ``x \\ne a``), named values (``x = 5``, ``f(x) = 1``,
``V_1:V_2 = 11:21`` are their value; "k = 45, n = 2" is a tuple with names), chains (``x = 5 + 6 = 11``
is 11; ``\\frac13 \\approx 0.33`` is 1/3), equations (equal when one side difference is a non-zero
multiple of the other), matrices in any environment with their sums and products, ``\\sum`` with a
small closed form, and text answers (compared as lower-case alphanumerics).

Equality of values: two rationals compare exactly (``0.75 = \\frac34``, ``1/2004! ≠ 1/2006!``);
other constants compare numerically at 40 significant digits with a 1e-25 relative tolerance
(surds, π, e, logs, trig), and a constant is zero only when evalf finds it so (a cancellation), not
when it is merely small (``e^{-100} ≠ 0``); expressions with free symbols compare at three rational
points, substituted through the same guards as the parser's.

Guards, applied before sympy evaluates anything: at most 2,000 characters and 400 tokens, brackets
nested at most 40 deep, integer results of at most 200,000 bits (a larger rational power is kept as
an opaque symbol: it cancels with itself and equals nothing else), factorials of at most 5,000,
symbolic exponents of at most 1,000, binomials multiplied out only when small, trigonometric
arguments of at most 2^200,000, matrices of at most 8 × 8. Two numbers side by side (``1 2``) are no
product. A refused or unreadable answer is compared by its spelling only (up to spaces, ``\\text{}``,
one-character braces and a name: ``52_{8}`` = ``52_8``, but ``528`` ≠ ``52_8``). ``check`` never
raises; unexpected internal failures come back in ``Verdict.error``.

Importing this module bounds sympy's primality tests process-wide (see :func:`_bound_prime_tests`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import mpmath
import sympy
from sympy.core.evalf import PrecisionExhausted

from lightning_grpo.rewards.extraction import (
    MAX_ANSWER_CHARS,
    MODES,
    all_boxed,
    extract_answer,
    extract_candidates,
)
from lightning_grpo.rewards.normalize import normalize_answer

MAX_TOKENS = 400
MAX_DEPTH = 40
MAX_BITS = 200_000
MAX_FACTORIAL = 5_000
MAX_SYMBOLIC_EXPONENT = 1_000
_PRECISION = 40
_REL_TOL = sympy.Float("1e-25", _PRECISION)
_ZERO_TOL = sympy.Float("1e-30", _PRECISION)
_ZERO_PREC_BITS = 64  # evalf returns a cancelled zero with (almost) no bits of precision
PRIME_TEST_BITS = 2048


def _bound_prime_tests() -> None:
    """Make ``Integer.is_prime`` and ``is_composite`` answer "unknown" (None) beyond
    ``PRIME_TEST_BITS`` bits.

    sympy's assumption system settles some facts by first asking related ones in a random order, so
    deciding the sign of ``\\log(1000!)`` can run a primality test on ``1000! - 1``; its pure-Python
    BPSW test takes seconds on a 10,000-bit integer and hours on a ``MAX_BITS`` one, all of it
    uninterruptible bignum work. None is always a valid answer to an assumption query, so this only
    leaves such facts undecided. Installed once, process-wide, when this module is imported.
    """
    handlers = sympy.Integer._prop_handler
    for fact in ("prime", "composite"):
        original = handlers.get(fact)
        if original is None or getattr(original, "bounded", False):
            continue

        def bounded(self: sympy.Integer, original=original) -> bool | None:  # noqa: B008
            return None if abs(self.p).bit_length() > PRIME_TEST_BITS else original(self)

        bounded.bounded = True  # type: ignore[attr-defined]
        handlers[fact] = bounded


_bound_prime_tests()


@dataclass(frozen=True)
class VerifyPolicy:
    """Grading policy. ``percent``: ``strip`` (50\\% = 50, and an answer's 10\\% = 0.1), ``either`` (also a
    gold's 50\\% = 0.5), ``strict`` (a percent sign on one side only is wrong). ``rounded_decimals``:
    accept a decimal answer with at least ``min_rounded_digits`` decimals that is the correctly
    rounded value of an irrational gold. ``mode``: how the answer is found in the completion
    (``lenient`` or ``strict``, see :mod:`lightning_grpo.rewards.extraction`)."""

    percent: Literal["strip", "either", "strict"] = "strip"
    rounded_decimals: bool = False
    min_rounded_digits: int = 2
    mode: Literal["lenient", "strict"] = "lenient"

    def __post_init__(self) -> None:
        if self.percent not in ("strip", "either", "strict"):
            raise ValueError(f"percent must be 'strip', 'either' or 'strict', got {self.percent!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: the extracted answer (None if none) and any internal error."""

    correct: bool
    answer: str | None
    error: str | None = None


class Unreadable(ValueError):
    """The parser cannot read (or refuses to evaluate) an answer; it is compared as text."""


class _TextAnswer(Unreadable):
    """The answer is words, not math."""


# ---------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class _Seq:
    """An ordered tuple or interval: ``(a, b]`` is ``_Seq('(', ']', (a, b))``."""

    open: str
    close: str
    items: tuple[object, ...]


@dataclass(frozen=True)
class _Bag:
    """An unordered collection (set, bare list, ``\\pm`` pair, union of intervals). ``bare``: written
    without braces ("1, 3"), so it also equals a tuple with the same items in the same order."""

    items: tuple[object, ...]
    bare: bool = False


@dataclass(frozen=True)
class _Named:
    """Values that name different quantities ("k = 45, n = 2"): a tuple whose items also have names."""

    names: tuple[str, ...]
    values: tuple[object, ...]


@dataclass(frozen=True)
class _Matrix:
    rows: tuple[tuple[sympy.Expr, ...], ...]


@dataclass(frozen=True)
class _Equation:
    """``lhs = rhs`` as the expression ``lhs - rhs``."""

    difference: sympy.Expr


@dataclass(frozen=True)
class _Text:
    key: str


# ---------------------------------------------------------------------------------------------
# Tokenizer and expression parser

_TOKEN = re.compile(r"\s*(\d+\.?\d*|\.\d+|\\[a-zA-Z]+|\\[{}|]|[a-zA-Z]+|[-+*/^_(){}\[\],=<>!|'])")
_FUNCTIONS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc,
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh,
    "tanh": sympy.tanh, "ln": sympy.log, "log": sympy.log, "exp": sympy.exp,
}
_INVERSE = {"sin": "arcsin", "cos": "arccos", "tan": "arctan"}
_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma "
    "tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega".split()
)
_WORDS = {"pi": "\\pi", "sqrt": "\\sqrt", "inf": "\\infty", "infinity": "\\infty", **{f: "\\" + f for f in _FUNCTIONS}}
_ATOM_COMMANDS = frozenset({"\\frac", "\\sqrt", "\\pi", "\\infty", "\\binom", "\\lfloor", "\\lceil", "\\sum"})
_SIMPLE_FRACS = (
    (re.compile(r"\\frac\s*(\d)\s*(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s*(\d)\s*\{"), r"\\frac{\1}{"),
    (re.compile(r"\\frac\s*(\{[^{}]*\})\s*(\d)"), r"\\frac\1{\2}"),
    (re.compile(r"\\sqrt\s*(\d)"), r"\\sqrt{\1}"),
)


def _tokenize(text: str) -> list[str]:
    for pattern, replacement in _SIMPLE_FRACS:
        text = pattern.sub(replacement, text)
    tokens: list[str] = []
    pos, depth = 0, 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise Unreadable(f"unexpected character {text[pos]!r}")
        token, pos = match.group(1), match.end()
        if token.isalpha():
            word = _WORDS.get(token)
            if word is not None:
                tokens.append(word)
            elif len(token) >= 3:
                raise _TextAnswer(token)
            else:
                tokens.extend(token)
            continue
        depth += 1 if token in "([{" or token == "\\{" else -1 if token in ")]}" or token == "\\}" else 0
        if depth > MAX_DEPTH:
            raise Unreadable("nested too deeply")
        tokens.append(token)
        if len(tokens) > MAX_TOKENS:
            raise Unreadable("too many tokens")
    return tokens


def _checked(value: sympy.Expr) -> sympy.Expr:
    """Refuse rationals too large to be an answer (bounded memory for everything built later),
    whether the value itself or a rational term or factor of it (sympy folds ``(2^{m}\\pi)^{n}``
    into ``2^{mn}\\pi^{n}`` by itself)."""
    parts = value.args if value.is_Add or value.is_Mul else (value,)
    for part in parts:
        if part.is_Rational and max(abs(part.p).bit_length(), abs(part.q).bit_length()) > MAX_BITS:
            raise Unreadable("number too large")
    return value


def _magnitude(value: sympy.Expr) -> mpmath.mpf | None:
    """``|value|`` to 15 digits as an mpmath number (so beyond the float range), or None when it is
    not a finite number. Evaluates first and takes the modulus of the result: ``sympy.Abs`` of a
    complex expression can spend seconds simplifying it."""
    try:
        number = value.evalf(15)
    except PrecisionExhausted:
        return None
    if not number.is_number:
        return None
    parts = number.as_real_imag()
    if not all(part.is_Float or part.is_zero for part in parts):
        return None
    modulus = mpmath.hypot(*(mpmath.mpf(part._mpf_) if part.is_Float else mpmath.mpf(0) for part in parts))
    return modulus if mpmath.isfinite(modulus) else None


def _too_large(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Symbol:
    """A rational power too large to compute (``10^{10^{10}}``), kept as an opaque symbol named by
    its base and exponent: it is never evaluated, yet cancels exactly (``10^{10^{10}} - 10^{10^{10}}
    = 0``) and differs from anything else (``10^{10^{10}} + 1``, a number, another power)."""
    return sympy.Symbol(f"huge{abs(hash((base, exponent))):x}")


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    if exponent.is_Integer:
        n = abs(int(exponent))
        if base.is_Rational:
            if base not in (0, 1, -1):
                bits = max(abs(base.p).bit_length(), base.q.bit_length())
                if n * bits > MAX_BITS:
                    return _too_large(base, exponent)
        elif n > MAX_SYMBOLIC_EXPONENT:
            raise Unreadable("exponent too large")
    elif exponent.is_Rational:
        if abs(exponent.p) > MAX_SYMBOLIC_EXPONENT or exponent.q > MAX_SYMBOLIC_EXPONENT:
            raise Unreadable("exponent too large")
        if base.is_Rational and max(abs(base.p).bit_length(), base.q.bit_length()) > 256:
            raise Unreadable("root of a large number")
    elif exponent.is_number and base.is_number:
        magnitude = _magnitude(exponent)
        if magnitude is None or magnitude > MAX_SYMBOLIC_EXPONENT:
            raise Unreadable("exponent too large")
    return _checked(sympy.Pow(base, exponent))


def _factorial(value: sympy.Expr) -> sympy.Expr:
    if value.is_Integer:
        if not 0 <= value <= MAX_FACTORIAL:
            raise Unreadable("factorial out of range")
        return sympy.factorial(value)
    if value.is_number:
        raise Unreadable("factorial of a non-integer")
    return sympy.factorial(value)


def _binomial(top: sympy.Expr, bottom: sympy.Expr) -> sympy.Expr:
    """``\\binom{n}{k}``: numbers at most ``MAX_FACTORIAL`` in size, and an integer ``k`` at most
    ``MAX_SYMBOLIC_EXPONENT`` unless ``n`` is an integer too (``\\binom{x}{k}`` is a polynomial of
    degree ``k``, and sympy multiplies it out at a point)."""
    for value in (top, bottom):
        if value.is_number and not _small(value, MAX_FACTORIAL):
            raise Unreadable("binomial out of range")
    if bottom.is_Integer and not top.is_Integer and abs(bottom) > MAX_SYMBOLIC_EXPONENT:
        raise Unreadable("binomial out of range")
    if bottom.is_Integer and top.is_Rational and not top.is_Integer:  # a product of |k| fractions
        if abs(bottom) * max(abs(top.p).bit_length(), top.q.bit_length()) > MAX_BITS:
            raise Unreadable("binomial too large")
    if any(value.is_number and not value.is_Rational for value in (top, bottom)):
        # sympy multiplies \\binom{\\pi}{999} out symbolically (minutes); evalf takes it through Γ
        return sympy.binomial(top, bottom, evaluate=False)
    return sympy.binomial(top, bottom)


def _small(value: sympy.Expr, bound: int) -> bool:
    """Whether the number ``value`` is at most ``bound`` in absolute value."""
    if value.is_Rational:
        return bool(abs(value) <= bound)
    magnitude = _magnitude(value)
    return magnitude is not None and magnitude <= bound


def _rounded(function: type, value: sympy.Expr) -> sympy.Expr:
    """``\\lfloor x \\rfloor`` / ``\\lceil x \\rceil``; a value sympy cannot round is refused, and
    so is an irrational one beyond 2^256 (rounding it takes more bits than evalf allows, found only
    after trying)."""
    if value.is_number and not value.is_Rational:
        magnitude = _magnitude(value)
        if magnitude is None or magnitude > mpmath.ldexp(1, 256):
            raise Unreadable("cannot round this value")
    try:
        return function(value)
    except PrecisionExhausted:
        raise Unreadable("cannot round this value") from None


_TRIG = (sympy.sin, sympy.cos, sympy.tan, sympy.cot, sympy.sec, sympy.csc, sympy.sinh, sympy.cosh, sympy.tanh)
MAX_TRIG_ARGUMENT_BITS = 200_000


def _trig(function: type, value: sympy.Expr) -> sympy.Expr:
    """A trigonometric function; a numeric argument beyond ``2^MAX_TRIG_ARGUMENT_BITS`` is refused
    (reducing it modulo π would need that many bits of precision)."""
    if value.is_number and not value.is_Rational:
        magnitude = _magnitude(value)
        if magnitude is None or magnitude > mpmath.ldexp(1, MAX_TRIG_ARGUMENT_BITS):
            raise Unreadable("trigonometric argument too large")
    return function(value)


class _Parser:
    """Recursive descent over LaTeX-ish math: + - * / ^ ! implicit products, \\frac \\sqrt, functions."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.abs_depth = 0

    def parse(self) -> sympy.Expr:
        value = self.expr()
        if self.pos != len(self.tokens):
            raise Unreadable(f"unexpected {self.peek()!r}")
        return value

    def peek(self, offset: int = 0) -> str | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise Unreadable(f"expected {expected!r}, got {token!r}")
        self.pos += 1
        return token

    def expr(self) -> sympy.Expr:
        value = self.term()
        while self.peek() in ("+", "-"):
            sign = self.take()
            right = self.term()
            value = _checked(value + right if sign == "+" else value - right)
        return value

    def term(self) -> sympy.Expr:
        start = self.pos
        value = self.unary()
        while True:
            token = self.peek()
            if token in ("*", "\\cdot", "\\times"):
                self.take()
                start = self.pos
                value = _checked(value * self.unary())
            elif token in ("/", "\\div"):
                self.take()
                start = self.pos
                divisor = self.unary()
                if divisor == 0:
                    raise Unreadable("division by zero")
                value = _checked(value / divisor)
            elif self.starts_atom(token):
                mixed = self.mixed_fraction(value)
                if mixed is not None:
                    value = _checked(value + mixed)
                elif token[0].isdigit() or token[0] == ".":  # "1 2" is no product (LaTeX prints 12)
                    # ... but powers side by side are: 2^6 3^5 5^4 is a factorisation
                    if not ("^" in self.tokens[start : self.pos] and self.peek(1) == "^"):
                        raise Unreadable("a number right after a factor")
                    start = self.pos
                    value = _checked(value * self.power())
                else:
                    start = self.pos
                    value = _checked(value * self.power())
            else:
                return value

    def mixed_fraction(self, whole: sympy.Expr) -> sympy.Expr | None:
        """``2\\frac{1}{2}`` (a whole number then a fraction of digits) is 5/2, not 1."""
        window = self.tokens[self.pos : self.pos + 7]
        if not (whole.is_Integer and len(window) == 7 and window[0] == "\\frac"):
            return None
        if window[1::3] != ["{", "{"] or window[3::3] != ["}", "}"] or not (window[2] + window[5]).isdigit():
            return None
        previous = self.tokens[self.pos - 1]
        if not previous.isdigit():
            return None
        self.pos += 7
        fraction = sympy.Rational(int(window[2]), int(window[5]))
        return fraction if whole >= 0 else -fraction

    def starts_atom(self, token: str | None) -> bool:
        if token is None:
            return False
        if token == "|":
            return self.abs_depth == 0
        return (
            token[0].isdigit() or token[0] == "." or token.isalpha() or token in ("(", "[", "{")
            or token in _ATOM_COMMANDS or token[1:] in _FUNCTIONS or token[1:] in _GREEK
        )

    def unary(self) -> sympy.Expr:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.postfix()
        if self.peek() != "^":
            return base
        self.take()
        return _power(base, self.exponent())

    def exponent(self) -> sympy.Expr:
        if self.peek() == "{":
            return self.group("{", "}")
        if self.peek() == "-":
            self.take()
            return -self.power()
        return self.power()

    def postfix(self) -> sympy.Expr:
        value = self.atom()
        while self.peek() == "!":
            self.take()
            value = _checked(_factorial(value))
        return value

    def group(self, opening: str, closing: str) -> sympy.Expr:
        self.take(opening)
        saved, self.abs_depth = self.abs_depth, 0
        value = self.expr()
        self.abs_depth = saved
        self.take(closing)
        return value

    def argument(self) -> sympy.Expr:
        """A command's argument: a brace group, or a single atom (``\\sqrt 2``)."""
        return self.group("{", "}") if self.peek() == "{" else self.postfix()

    def atom(self) -> sympy.Expr:
        token = self.peek()
        if token is None:
            raise Unreadable("unexpected end")
        if token[0].isdigit() or token[0] == ".":
            self.take()
            if self.peek() == "_":
                raise Unreadable("number with a base subscript")
            return _checked(sympy.Rational(token))
        if token in ("(", "[", "{"):
            return self.group(token, {"(": ")", "[": "]", "{": "}"}[token])
        if token == "|":
            self.take()
            self.abs_depth += 1
            value = self.expr()
            self.abs_depth -= 1
            self.take("|")
            # sympy's Abs of a symbolic or complex expression can spend seconds expanding it (the
            # real and imaginary parts of (...)^{999}); it is taken numerically, at each point
            return sympy.Abs(value) if value.is_Rational else sympy.Abs(value, evaluate=False)
        if token.isalpha():
            self.take()
            if self.peek() == "_":
                self.take()
                index = self.take()
                if index == "{":
                    index = "".join(iter(self.take, "}"))[:20]
                return sympy.Symbol(f"{token}_{index}")
            return {"e": sympy.E, "i": sympy.I}.get(token) or sympy.Symbol(token)
        self.take()
        if token == "\\frac":
            numerator = self.argument()
            denominator = self.argument()
            if denominator == 0:
                raise Unreadable("division by zero")
            return _checked(numerator / denominator)
        if token == "\\sqrt":
            index = self.group("[", "]") if self.peek() == "[" else sympy.Integer(2)
            radicand = self.argument()
            if index == 0:
                raise Unreadable("zeroth root")
            return _power(radicand, 1 / index)
        if token == "\\sum":
            return self.summation()
        if token == "\\binom":
            top, bottom = self.argument(), self.argument()
            return _binomial(top, bottom)
        if token in ("\\lfloor", "\\lceil"):
            value = self.expr()
            self.take("\\rfloor" if token == "\\lfloor" else "\\rceil")
            return _rounded(sympy.floor if token == "\\lfloor" else sympy.ceiling, value)
        if token == "\\pi":
            return sympy.pi
        if token == "\\infty":
            return sympy.oo
        if token[1:] in _GREEK:
            return sympy.Symbol(token[1:])
        if token[1:] in _FUNCTIONS:
            return self.function(token[1:])
        raise Unreadable(f"unknown command {token!r}")

    def summation(self) -> sympy.Expr:
        """``\\sum_{k=a}^{b} body``: a polynomial body of degree at most ``MAX_SUM_DEGREE`` in k (summed in
        closed form), or at most ``MAX_SUM_TERMS`` terms between integer bounds (added up)."""
        self.take("_")
        self.take("{")
        index = self.take()
        if not index.isalpha() or len(index) != 1:
            raise Unreadable("a sum without an index")
        self.take("=")
        low = self.expr()
        self.take("}")
        self.take("^")
        high = self.exponent()
        body = self.term()
        symbol = sympy.Symbol(index)
        if low.is_Integer and high.is_Integer:
            if not 0 <= int(high) - int(low) < MAX_SUM_TERMS:
                raise Unreadable("a sum with too many terms")
            total = sympy.Integer(0)
            for k in range(int(low), int(high) + 1):
                total = _checked(total + _substitute(body, {symbol: sympy.Integer(k)}))
            return total
        polynomial = body.as_poly(symbol) if body.has(symbol) else None
        if body.has(symbol) and (polynomial is None or polynomial.degree() > MAX_SUM_DEGREE):
            raise Unreadable("a sum that has no small closed form")
        return _checked(sympy.summation(body, (symbol, low, high)))

    def letter_follows(self) -> bool:
        """Whether the next token is a variable, a Greek letter or π (part of ``\\sin 2\\theta``'s argument)."""
        token = self.peek()
        return token is not None and (token.isalpha() or token[1:] in _GREEK or token == "\\pi")

    def function(self, name: str) -> sympy.Expr:
        power: sympy.Expr | None = None
        base: sympy.Expr | None = None
        if self.peek() == "^":
            self.take()
            power = self.exponent()
            if power == -1 and name in _INVERSE:
                name, power = _INVERSE[name], None
        if self.peek() == "_" and name == "log":
            self.take()
            base = self.argument()
        if self.peek() in ("(", "{"):
            argument = self.group(self.peek(), ")" if self.peek() == "(" else "}")
        else:  # \\sin 2x, \\cos 2\\theta, \\sin \\pi x: the argument runs over the letters that follow
            argument = self.power()
            while self.letter_follows():
                argument = _checked(argument * self.power())
        if base is not None:
            value = sympy.log(argument, base)
        elif name == "exp":
            value = _power(sympy.E, argument)
        elif _FUNCTIONS[name] in _TRIG:
            value = _trig(_FUNCTIONS[name], argument)
        else:
            value = _FUNCTIONS[name](argument)
        return _power(value, power) if power is not None else value


def parse_expression(text: str) -> sympy.Expr:
    """One expression (no commas, relations or brackets-as-structure) as a sympy object."""
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# Structure: sets, tuples, intervals, relations


_RELATION = re.compile(r"\\le\b|\\ge\b|\\ne\b|<=|>=|[<>]")
_LONE_SYMBOL = re.compile(r"^\s*(?:[a-zA-Z](?:_\{?\w+\}?)?|\\[a-zA-Z]+|[a-zA-Z]\([a-zA-Z]\))\s*$")
_SUBSCRIPT = r"(?:_\{?[\w,]+\}?)?"
# What names a value ("x = 5", "a_{37} = 19", "f(x) = 1", "|AB| = 1", "(p, q) = (3, 2)", "V_1:V_2 = 11:21",
# "\frac{NO}{BO} = ...", "Area = 15"): the answer is the right-hand side, not an equation
_NAME = re.compile(
    r"^\s*(?:[A-Za-z]" + _SUBSCRIPT + r"'*|\\[a-zA-Z]+" + _SUBSCRIPT + r"|[A-Z]{2,4}" + _SUBSCRIPT
    + r"|[A-Za-z]{3,20}|[A-Za-z]" + _SUBSCRIPT + r"\([a-zA-Z0-9]\)|\|[A-Z]{1,4}\|"
    + r"|\(\s*(?:[a-zA-Z]" + _SUBSCRIPT + r"\s*,\s*)+[a-zA-Z]" + _SUBSCRIPT + r"\s*\)"
    + r"|[A-Z]" + _SUBSCRIPT + r"\s*:\s*[A-Z]" + _SUBSCRIPT + r"|\\frac\s*\{[A-Z]{1,4}\}\s*\{[A-Z]{1,4}\})\s*$"
)
_NOT_NAMES = frozenset({"\\frac", "\\sqrt", "\\pi", "\\infty", "\\binom", "\\lfloor", "\\lceil", "\\emptyset"})
_MATRIX = re.compile(
    r"^(?:\\begin\{[pbvBV]?matrix\}(.*)\\end\{[pbvBV]?matrix\}"
    r"|\(\s*\\begin\{matrix\}(.*)\\end\{matrix\}\s*\)|\[\s*\\begin\{matrix\}(.*)\\end\{matrix\}\s*\])$",
    re.S,
)
_ONE_MATRIX = re.compile(r"\\begin\{([pbB]?matrix)\}(.*?)\\end\{\1\}", re.S)
MAX_MATRIX_SIZE = 8
MAX_SUM_TERMS = 1000
MAX_SUM_DEGREE = 6


def _split_top(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` wherever it is outside every bracket."""
    parts: list[str] = []
    depth, start, pos = 0, 0, 0
    while pos < len(text):
        if text.startswith(("\\{", "\\}"), pos):
            depth += 1 if text[pos + 1] == "{" else -1
            pos += 2
            continue
        char = text[pos]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(separator, pos):
            parts.append(text[start:pos])
            pos += len(separator)
            start = pos
            continue
        pos += 1
    parts.append(text[start:])
    return parts


def _enclosed(text: str, opening: str, closing: str) -> bool:
    """Whether ``text`` is one bracket pair ``opening … closing`` (not ``(a)(b)``)."""
    if not (text.startswith(opening) and text.endswith(closing)):
        return False
    inner = text[len(opening) : -len(closing)]
    depth = 0
    for char in inner:
        depth += 1 if char in "([{" else -1 if char in ")]}" else 0
        if depth < 0:
            return False
    return depth == 0


def _is_name(text: str) -> bool:
    """Whether ``text`` names a value (see ``_NAME``) rather than being an expression."""
    return _NAME.match(text) is not None and text.strip() not in _NOT_NAMES and not _ONE_MATRIX.search(text)


def parse_value(text: str, strip_variable: bool = True) -> object:
    """Read a normalised answer into an expression or a structure (see the module docstring).

    ``strip_variable`` reads ``x = 5`` as 5; without it, as the equation ``x - 5 = 0``.
    """
    text = text.strip()
    if not text:
        raise Unreadable("empty")
    while _enclosed(text, "{", "}"):  # a LaTeX group ("${1,3}$"), not a set (that is \{ \})
        text = text[1:-1].strip()
    member = re.match(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*\\in\s*(.+)$", text, re.S)
    if member is not None:
        text = member.group(1).strip()
    if "\\approx" in text:  # "x = 1/3 \approx 0.33" and "\frac{\sqrt3}{3} \approx 0.577" are exact; "x \approx 11" is 11
        pieces = _split_top(text, "\\approx")
        text = pieces[-1] if _is_name(pieces[0]) else pieces[0]
        if not text.strip():
            raise Unreadable("empty")
    solutions = _split_top(text, ";")
    if len(solutions) > 1:  # "-12; -11; -10", "p=5, q=2; p=7, q=2"
        return _Bag(tuple(_flatten(parse_value(part, strip_variable) for part in solutions)), bare=True)
    unions = _split_top(text, "\\cup")
    if len(unions) > 1:
        return _Bag(tuple(_interval(part.strip()) for part in unions))
    if _enclosed(text, "\\{", "\\}"):
        return _Bag(tuple(_flatten(parse_value(item) for item in _split_top(text[2:-2], ","))))
    if _ONE_MATRIX.search(text):
        matrix = _matrix_expression(text)
        if matrix is not None:
            return matrix
    matrix = _MATRIX.match(text)
    if matrix is not None:
        body = next(group for group in matrix.groups() if group is not None)
        return _matrix_of(body)
    for opening, closing in (("(", ")"), ("(", "]"), ("[", ")"), ("[", "]")):
        if _enclosed(text, opening, closing):
            items = _split_top(text[1:-1], ",")
            if len(items) == 1 and (opening, closing) == ("(", ")"):
                items = _split_top(text[1:-1], ";")  # "(0;-2;6)"
            if len(items) > 1:
                return _Seq(opening, closing, tuple(parse_value(item) for item in items))
    items = _split_top(text, ",")
    if len(items) > 1:
        return _list(items, strip_variable)
    for sign in ("\\pm", "\\mp"):
        if sign in text:
            plus, minus = text.replace(sign, "+", 1), text.replace(sign, "-", 1)
            return _Bag((parse_value(plus), parse_value(minus)))
    if _RELATION.search(text):
        return _inequality(text)
    sides = _split_top(text, "=")
    if len(sides) > 1:
        return _equality(sides, strip_variable)
    return parse_expression(text)


def _list(items: list[str], strip_variable: bool) -> object:
    """A bare comma list. Items that all name different values ("k = 45, n = 2") are an ordered
    tuple of those names; otherwise names are dropped ("x = 1, x = 2", "a = 4, -8, -10") and the
    values form an unordered collection."""
    if not strip_variable:
        return _Bag(tuple(_flatten(parse_value(item, False) for item in items)), bare=True)
    named = [_split_top(item, "=") for item in items]
    names = [sides[0].strip() for sides in named if len(sides) == 2 and _is_name(sides[0])]
    if len(names) == len(items) and len(set(names)) == len(names):
        values = tuple(parse_value(sides[1]) for sides in named)
        return _Named(tuple(re.sub(r"\s+|[{}]", "", name) for name in names), values)
    return _Bag(tuple(_flatten(parse_value(item) for item in items)), bare=True)


def _equality(sides: list[str], strip_variable: bool) -> object:
    """``x = 5`` is 5 (a named value); ``x = 5 + 5 + 1 = 11`` (a chain) its last side; ``5 \\cdot 24 = 120``
    (arithmetic) its result; anything else is an equation."""
    if any(not side.strip() for side in sides):
        raise Unreadable("an equation with an empty side")
    if strip_variable:
        if len(sides) > 2:
            return parse_value(sides[-1])
        if _is_name(sides[0]):
            return parse_value(sides[1])
    if len(sides) > 2:
        raise Unreadable("chained equation")
    lhs, rhs = parse_expression(sides[0]), parse_expression(sides[1])
    if strip_variable and not lhs.free_symbols and not rhs.free_symbols:
        return rhs
    return _Equation(lhs - rhs)


def _flatten(values: object) -> list[object]:
    """Members of a set: a ``\\pm`` member contributes both of its values."""
    out: list[object] = []
    for value in values:  # type: ignore[attr-defined]
        out.extend(value.items if isinstance(value, _Bag) else [value])
    return out


def _interval(text: str) -> object:
    """A part of a union: an interval, or a finite set of points (``\\{-1\\} \\cup [0, 7)``)."""
    value = parse_value(text)
    if isinstance(value, _Seq) and len(value.items) == 2:
        return value
    if isinstance(value, _Bag) and not value.bare and all(isinstance(v, sympy.Basic) for v in value.items):
        if len(value.items) == 1:
            return _Seq("[", "]", (value.items[0], value.items[0]))
    if isinstance(value, sympy.Basic):
        raise Unreadable("a union with a bare value")
    raise Unreadable("a union of non-intervals")


def _matrix_of(body: str) -> _Matrix:
    rows = [row for row in _split_top(body, "\\\\") if row.strip()]
    if len(rows) > MAX_MATRIX_SIZE:
        raise Unreadable("matrix too large")
    cells = tuple(tuple(parse_expression(cell) for cell in _split_top(row, "&")) for row in rows)
    if any(len(row) > MAX_MATRIX_SIZE for row in cells):
        raise Unreadable("matrix too large")
    return _Matrix(cells)


def _matrix_expression(text: str) -> _Matrix | None:
    """Sums and products of matrices (``A + B``, ``I \\cdot I``, ``2A``, ``(A)``) as one matrix, through
    sympy's exact matrix arithmetic; None when ``text`` is no such expression."""
    matrices: list[_Matrix] = []

    def placeholder(match: re.Match[str]) -> str:
        matrices.append(_matrix_of(match.group(2)))
        return f" M{len(matrices) - 1} "

    rest = _ONE_MATRIX.sub(placeholder, text).strip()
    if len(matrices) > 4 or not re.fullmatch(r"(?:\s|M\d+|\\cdot|\\times|\*|[+\-()]|\d+)*", rest):
        return None
    try:
        tokens = re.findall(r"M\d+|\\cdot|\\times|\*|[+\-()]|\d+", rest)
        value = _MatrixParser(tokens, [sympy.Matrix(m.rows) for m in matrices]).parse()
    except (Unreadable, sympy.ShapeError, ValueError, TypeError, IndexError):
        return None
    if not isinstance(value, sympy.MatrixBase):
        return None
    return _Matrix(tuple(tuple(value.row(i)) for i in range(value.rows)))


class _MatrixParser:
    """``term (± term)*``; ``term = factor ((\\cdot|\\times|*)? factor)*``; ``factor = M<i> | integer | ( … )``."""

    def __init__(self, tokens: list[str], matrices: list[sympy.Matrix]) -> None:
        self.tokens, self.matrices, self.pos = tokens, matrices, 0

    def parse(self) -> object:
        value = self.sum()
        if self.pos != len(self.tokens):
            raise Unreadable("unexpected token in a matrix expression")
        return value

    def sum(self) -> object:
        value = self.product()
        while self.pos < len(self.tokens) and self.tokens[self.pos] in "+-":
            sign = self.tokens[self.pos]
            self.pos += 1
            right = self.product()
            value = value + right if sign == "+" else value - right
        return value

    def product(self) -> object:
        sign = 1
        while self.pos < len(self.tokens) and self.tokens[self.pos] == "-":
            sign, self.pos = -sign, self.pos + 1
        value = self.factor()
        while self.pos < len(self.tokens) and self.tokens[self.pos] not in "+-)":
            if self.tokens[self.pos] in ("\\cdot", "\\times", "*"):
                self.pos += 1
            value = value * self.factor()
        return sign * value

    def factor(self) -> object:
        if self.pos >= len(self.tokens):
            raise Unreadable("unexpected end of a matrix expression")
        token = self.tokens[self.pos]
        self.pos += 1
        if token == "(":
            value = self.sum()
            if self.pos >= len(self.tokens) or self.tokens[self.pos] != ")":
                raise Unreadable("unbalanced parentheses")
            self.pos += 1
            return value
        if token.startswith("M"):
            return self.matrices[int(token[1:])]
        if token.isdigit() and len(token) <= 6:
            return sympy.Integer(token)
        raise Unreadable(f"unexpected {token!r} in a matrix expression")


def _bound(text: str) -> sympy.Expr:
    value = parse_expression(text)
    if value.free_symbols:
        raise Unreadable("a bound with a variable")
    return value


def _sign(value: sympy.Expr) -> int:
    number = _numeric(value)
    if number is None or not number.is_real or _negligible(number):
        raise Unreadable("no sign")
    return 1 if number > 0 else -1


def _inequality(text: str) -> object:
    """``a < x \\le b``, ``x > a``, ``5 \\ge x``, ``-x > -1``, ``2x + 1 \\le 7`` (linear in one variable),
    ``a \\le |x| \\le b`` and ``x \\ne a`` as the interval (or union of intervals) of x."""
    relations = _RELATION.findall(text)
    sides = [part.strip() for part in _RELATION.split(text)]
    if not 1 <= len(relations) <= 2 or not all(sides):
        raise Unreadable("not an inequality")
    relations = [{"<=": "\\le", ">=": "\\ge"}.get(r, r) for r in relations]
    if relations == ["\\ne"]:
        point = _bound(sides[1]) if _LONE_SYMBOL.match(sides[0]) else _bound(sides[0])
        return _Bag((_Seq("(", ")", (-sympy.oo, point)), _Seq("(", ")", (point, sympy.oo))))
    if "\\ne" in relations:
        raise Unreadable("mixed inequality")
    lower = [r in ("<", "\\le") for r in relations]
    if len(set(lower)) != 1:
        raise Unreadable("mixed inequality")
    strict = [r in ("<", ">") for r in relations]
    if not lower[0]:
        sides, strict = sides[::-1], strict[::-1]
    absolute = re.fullmatch(r"\|\s*([a-zA-Z])\s*\|", sides[0] if len(relations) == 1 else "")
    if absolute is not None:  # |x| < a (sides put in "less than" order: |x| is on the left)
        bound = _bound(sides[1])
        if _sign(bound) <= 0:
            raise Unreadable("a nonpositive bound on |x|")
        close = ")" if strict[0] else "]"
        return _Seq("(" if strict[0] else "[", close, (-bound, bound))
    absolute = re.fullmatch(r"\|\s*([a-zA-Z])\s*\|", sides[1] if len(relations) == 1 else "")
    if absolute is not None:  # a < |x|
        bound = _bound(sides[0])
        if _sign(bound) <= 0:
            raise Unreadable("a nonpositive bound on |x|")
        inner = ")" if strict[0] else "]"
        return _Bag((_Seq("(", inner, (-sympy.oo, -bound)), _Seq("(" if strict[0] else "[", ")", (bound, sympy.oo))))
    if len(relations) == 2:
        absolute = re.fullmatch(r"\|\s*([a-zA-Z])\s*\|", sides[1])
        low, high = _bound(sides[0]), _bound(sides[2])
        if absolute is not None and (low.is_zero or _sign(low) > 0):
            left, right = ("(" if strict[1] else "["), (")" if strict[1] else "]")
            if low.is_zero:
                if strict[0]:
                    return _Bag((_Seq(left, ")", (-high, 0)), _Seq("(", right, (0, high))))
                return _Seq(left, right, (-high, high))
            inner_left, inner_right = ("(" if strict[0] else "["), (")" if strict[0] else "]")
            return _Bag((_Seq(left, inner_right, (-high, -low)), _Seq(inner_left, right, (low, high))))
        if not _LONE_SYMBOL.match(sides[1]):
            raise Unreadable("no variable in the middle")
        return _Seq("(" if strict[0] else "[", ")" if strict[1] else "]", (low, high))
    left, right = parse_expression(sides[0]), parse_expression(sides[1])
    difference = left - right  # difference < 0 (or <= 0)
    symbols = difference.free_symbols
    if len(symbols) != 1:
        raise Unreadable("no single variable in the inequality")
    (symbol,) = symbols
    slope = difference.diff(symbol)
    if slope.free_symbols or slope.is_zero:
        raise Unreadable("not a linear inequality")
    intercept = difference.subs(symbol, 0)
    root = -intercept / slope
    if _sign(slope) > 0:  # symbol < root
        return _Seq("(", ")" if strict[0] else "]", (-sympy.oo, root))
    return _Seq("(" if strict[0] else "[", ")", (root, sympy.oo))


# ---------------------------------------------------------------------------------------------
# Equality

_INLINE_MATH_SPANS = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]", re.S)

_POINTS = (
    (sympy.Rational(7, 5), sympy.Rational(-3, 11), sympy.Rational(13, 7)),
    (sympy.Rational(2, 3), sympy.Rational(17, 6), sympy.Rational(-5, 9)),
    (sympy.Rational(-11, 4), sympy.Rational(5, 13), sympy.Rational(19, 10)),
)


def _numeric(value: sympy.Expr) -> sympy.Expr | None:
    """``value`` to 40 digits, or None when it is not a finite number (or sympy cannot tell which:
    ``\\lfloor e^{999} \\rfloor`` needs more precision than evalf allows)."""
    try:
        number = value.evalf(_PRECISION)
    except PrecisionExhausted:
        return None
    if not number.is_number or number.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
        return None
    return number


def _substitute(value: sympy.Expr, point: dict[sympy.Symbol, sympy.Rational]) -> sympy.Expr:
    """``value`` with ``point`` substituted, rebuilt bottom-up through the parser's guards, so that a
    value that only explodes at a point (``2^{x^{1000}}``, ``x^{x^{x^{x^{x}}}}``, ``\\binom{x}{2^{100}}``)
    raises :class:`Unreadable` instead of being computed."""
    if value.is_Symbol:
        return point.get(value, value)
    if not value.args or not value.free_symbols:
        return value
    args = [_substitute(arg, point) for arg in value.args]
    if value.is_Pow:
        return _power(args[0], args[1])
    if isinstance(value, sympy.exp):
        return _power(sympy.E, args[0])
    if isinstance(value, sympy.factorial):  # at a point, x! may be Γ(x+1) of a non-integer
        if args[0].is_Integer or not _small(args[0], MAX_FACTORIAL):
            return _checked(_factorial(args[0]))
        return sympy.factorial(args[0])
    if isinstance(value, sympy.binomial):
        return _binomial(args[0], args[1])
    if isinstance(value, (sympy.floor, sympy.ceiling)):
        return _rounded(value.func, args[0])
    if isinstance(value, _TRIG):
        return _trig(value.func, args[0])
    if isinstance(value, sympy.Abs):
        if args[0].is_Rational:
            return abs(args[0])
        number = _numeric(args[0])
        if number is None:
            raise Unreadable("no value")
        return abs(number)
    return _checked(value.func(*args))


def _at(value: sympy.Expr, point: dict[sympy.Symbol, sympy.Rational]) -> sympy.Expr | None:
    """The number ``value`` takes at ``point`` (40 digits), or None where it is not finite or too large."""
    try:
        return _numeric(_substitute(value, point))
    except (Unreadable, PrecisionExhausted, RecursionError):
        return None
    except (TypeError, ValueError, ArithmeticError, NotImplementedError):
        return None  # sympy's own evaluation fails on some values ("Invalid comparison of non-real")


def _negligible(number: sympy.Expr) -> bool:
    """Whether a 40-digit value is zero: exactly, or a cancellation that sympy's evalf reports as a
    tiny number without significant bits (``\\sqrt2+\\sqrt3-\\sqrt{5+2\\sqrt6}``). A genuinely small
    number (``e^{-100}``) keeps its full precision and is not zero."""
    for part in number.as_real_imag():
        if part == 0:
            continue
        if not isinstance(part, sympy.Float) or part._prec >= _ZERO_PREC_BITS or abs(part) >= _ZERO_TOL:
            return False
    return True


def _constants_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    if a.is_Rational and b.is_Rational:
        return bool(a == b)
    if a.has(sympy.oo, -sympy.oo, sympy.zoo) or b.has(sympy.oo, -sympy.oo, sympy.zoo):
        return bool(a == b)
    x, y = _numeric(a), _numeric(b)
    if x is None or y is None:
        return False
    if _negligible(x) or _negligible(y):
        return _negligible(x) and _negligible(y)
    difference, scale = abs(x - y), max(abs(x), abs(y))
    return bool(difference <= _REL_TOL * scale)


def _expressions_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    if a == b:
        return True
    symbols = a.free_symbols | b.free_symbols
    if not symbols:
        return _constants_equal(a, b)
    ordered = sorted(symbols, key=lambda s: s.name)
    agreed = 0
    for point in _POINTS:
        values = {s: point[i % len(point)] + i // len(point) for i, s in enumerate(ordered)}
        x, y = _at(a, values), _at(b, values)
        if x is None or y is None:
            continue
        if not _constants_equal(x, y):
            return False
        agreed += 1
    return agreed >= 2


def _equations_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    """``f = 0`` and ``g = 0`` are the same equation when g/f is a non-zero constant."""
    if a.free_symbols != b.free_symbols or not a.free_symbols:
        return False
    ordered = sorted(a.free_symbols, key=lambda s: s.name)
    ratios = []
    for point in _POINTS:
        values = {s: point[i % len(point)] + i // len(point) for i, s in enumerate(ordered)}
        x, y = _at(a, values), _at(b, values)
        if x is None or y is None or _negligible(x) or _negligible(y):
            continue
        ratios.append(y / x)
    return len(ratios) >= 2 and all(_constants_equal(r, ratios[0]) for r in ratios[1:])


def values_equal(answer: object, gold: object) -> bool:
    """Structural equality of two parsed values (see the module docstring)."""
    if isinstance(answer, sympy.Basic) and isinstance(gold, sympy.Basic):
        return _expressions_equal(answer, gold)
    if isinstance(answer, _Seq) and isinstance(gold, _Seq):
        return (
            (answer.open, answer.close) == (gold.open, gold.close)
            and len(answer.items) == len(gold.items)
            and all(values_equal(x, y) for x, y in zip(answer.items, gold.items))
        )
    if isinstance(answer, _Matrix) and isinstance(gold, _Seq) and (gold.open, gold.close) == ("(", ")"):
        return all(len(row) == 1 for row in answer.rows) and values_equal(
            _Seq("(", ")", tuple(row[0] for row in answer.rows)), gold
        )
    if isinstance(answer, _Seq) and isinstance(gold, _Matrix):
        return values_equal(gold, answer)
    if isinstance(answer, _Matrix) and isinstance(gold, _Matrix):
        return [len(r) for r in answer.rows] == [len(r) for r in gold.rows] and all(
            _expressions_equal(x, y) for ra, rg in zip(answer.rows, gold.rows) for x, y in zip(ra, rg)
        )
    if isinstance(answer, _Bag) and isinstance(gold, _Bag):
        return _bags_equal(list(answer.items), list(gold.items))
    if isinstance(answer, _Named) and isinstance(gold, _Named):
        if sorted(answer.names) == sorted(gold.names) and answer.names != gold.names:
            order = {name: i for i, name in enumerate(answer.names)}
            return all(values_equal(answer.values[order[n]], v) for n, v in zip(gold.names, gold.values))
        return _in_order(answer.values, gold.values)
    if isinstance(answer, (_Named, _Seq, _Bag)) and isinstance(gold, (_Named, _Seq, _Bag)):
        # a tuple written three ways: "(5, 2)", "5, 2" (a bare list, in the same order), "p = 5, q = 2"
        def items(value: object) -> tuple[object, ...] | None:
            if isinstance(value, _Named):
                return value.values
            if isinstance(value, _Bag):
                return value.items if value.bare else None
            return value.items if (value.open, value.close) == ("(", ")") else None

        a_items, g_items = items(answer), items(gold)
        if isinstance(answer, _Seq) and isinstance(gold, _Seq) or a_items is None or g_items is None:
            return False
        return _in_order(a_items, g_items)
    if isinstance(answer, _Equation) and isinstance(gold, _Equation):
        return _equations_equal(answer.difference, gold.difference)
    if isinstance(answer, _Text) and isinstance(gold, _Text):
        return answer.key == gold.key
    return False


def _in_order(answer: tuple[object, ...], gold: tuple[object, ...]) -> bool:
    return len(answer) == len(gold) and all(values_equal(x, y) for x, y in zip(answer, gold))


def _distinct(items: list[object]) -> list[object]:
    """``items`` without repeats (a solution listed twice is one solution)."""
    kept: list[object] = []
    for item in items:
        if not any(values_equal(item, other) for other in kept):
            kept.append(item)
    return kept


def _bags_equal(answer: list[object], gold: list[object]) -> bool:
    """Set equality under :func:`values_equal` (greedy matching; bags are small)."""
    answer, gold = _distinct(answer), _distinct(gold)
    if len(answer) != len(gold):
        return False
    remaining = list(gold)
    for item in answer:
        match = next((i for i, other in enumerate(remaining) if values_equal(item, other)), None)
        if match is None:
            return False
        remaining.pop(match)
    return True


def _text_key(text: str) -> str:
    """Words compared as lower-case letters and digits (``\\text{Evelyn}`` = ``evelyn``)."""
    return re.sub(r"\\text|\\mathrm|[^a-z0-9.+\-]", "", text.lower())


def _named_value(text: str) -> str:
    """The right-hand side of "name = value" ("V_1:V_2 = 11:21" is "11:21"), else ``text``."""
    sides = _split_top(text, "=")
    return sides[1] if len(sides) == 2 and _is_name(sides[0]) and sides[1].strip() else text


def _spelling_key(text: str) -> str:
    """An answer the parser cannot read, up to spacing, text wrappers and one-character braces
    (``52_{8}`` = ``52_8``). Every other character counts: ``528`` is not ``52_8``, ``1;2`` is not
    ``12``, ``[a+5)(b+2]`` is not ``(a+5)(b+2)``."""
    text = re.sub(r"\\(?:text|mathrm|mbox|textrm)\s*\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"([_^])\{(\w)\}", r"\1\2", text)
    return re.sub(r"\s+", "", text)


def _read(text: str, strip_variable: bool = True) -> object:
    """Parse; a text key when the answer is words; None when it is unreadable."""
    try:
        return parse_value(text, strip_variable)
    except _TextAnswer:
        return _Text(_text_key(text))
    except (Unreadable, RecursionError):
        return None


_DECIMAL = re.compile(r"^-?\d*\.(\d+)$")
_CHOICE = re.compile(r"^(?:\(([A-E])\)|([A-E])[.)])\s+(\S.*)$")


_CLOCK = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?")


def _seconds(clock: re.Match[str]) -> int:
    """Seconds since midnight of a clock time ``H:MM`` or ``H:MM:SS``."""
    return 3600 * int(clock.group(1)) + 60 * int(clock.group(2)) + int(clock.group(3) or 0)


@functools.lru_cache(maxsize=2048)
def equivalent(answer: str, gold: str, policy: VerifyPolicy = VerifyPolicy()) -> bool:
    """Whether the (un-normalised) ``answer`` string is equivalent to ``gold`` under ``policy``."""
    if len(answer) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False
    norm_answer, norm_gold = normalize_answer(answer), normalize_answer(gold)
    if policy.percent == "strict" and norm_answer.percent != norm_gold.percent:
        return False
    a_text, g_text = norm_answer.text, norm_gold.text
    if not a_text.strip() or not g_text.strip():  # "\\$" or "\\text{}" is no answer
        return False
    choice = _CHOICE.match(g_text)
    if choice is not None:  # a gold "(C) 12" or "C. x = 42": the letter or the value
        return any(equivalent(answer, part, policy) for part in (choice.group(1) or choice.group(2), choice.group(3)))
    chosen = _CHOICE.match(a_text)
    if chosen is not None and re.fullmatch(r"\(?([A-E])\)?", g_text):  # "C. x = 42" names choice C
        return (chosen.group(1) or chosen.group(2)) == g_text.strip("()")
    if a_text.replace(" ", "") == g_text.replace(" ", ""):
        return True
    a_clock, g_clock = _CLOCK.fullmatch(a_text.strip()), _CLOCK.fullmatch(g_text.strip())
    if a_clock and g_clock and (a_clock.group(3) or g_clock.group(3)):  # 20:34:00 = 20:34, never a ratio
        return _seconds(a_clock) == _seconds(g_clock)
    a_value, g_value = _read(a_text), _read(g_text)
    if a_value is None or g_value is None:
        return _spelling_key(_named_value(a_text)) == _spelling_key(_named_value(g_text))
    if isinstance(a_value, _Text) != isinstance(g_value, _Text):
        return False
    if values_equal(a_value, g_value):
        return True
    if isinstance(a_value, _Equation) != isinstance(g_value, _Equation) and "=" in a_text and "=" in g_text:
        a_equation, g_equation = _read(a_text, strip_variable=False), _read(g_text, strip_variable=False)
        if isinstance(a_equation, _Equation) and isinstance(g_equation, _Equation):
            return _equations_equal(a_equation.difference, g_equation.difference)
    if policy.percent != "strict" and norm_answer.percent and not norm_gold.percent:
        # "10%" is the number 0.1 too: a percent sign on the answer never makes a right value wrong
        if isinstance(a_value, sympy.Basic) and isinstance(g_value, sympy.Basic) and a_value.is_number:
            if _expressions_equal(a_value / 100, g_value):
                return True
    if policy.percent == "either" and norm_answer.percent != norm_gold.percent:
        if isinstance(a_value, sympy.Basic) and isinstance(g_value, sympy.Basic):
            scaled = a_value / 100 if norm_answer.percent else a_value * 100
            if _expressions_equal(scaled, g_value):
                return True
    decimals = _DECIMAL.match(a_text)
    if policy.rounded_decimals and decimals and isinstance(g_value, sympy.Basic) and g_value.is_number:
        digits = len(decimals.group(1))
        if digits >= policy.min_rounded_digits and not g_value.is_Rational:
            gold_number = _numeric(g_value)
            if gold_number is not None and gold_number.is_real:
                return bool(abs(sympy.Rational(a_text) - gold_number) <= sympy.Rational(1, 2 * 10**digits))
    return False


def _is_collection(text: str) -> bool:
    """Whether ``text`` reads as an unordered collection of several values (``3, 4``, ``\\{3, 4\\}``)."""
    if len(text) > MAX_ANSWER_CHARS:
        return False
    value = _read(normalize_answer(text).text)
    return isinstance(value, _Bag) and len(value.items) > 1


_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_GOLD_OR = re.compile(r"\s*,?\s*(?:\\text\s*\{\s*or\s*\}|(?<![A-Za-z])or(?![A-Za-z]))\s*")


def gold_answer(gold: str) -> str:
    """The gold answer, read through the same path as a completion's: every ``\\boxed{}`` in it (several
    form a list: ``\\boxed{1}\\boxed{2}``), else, for a worked solution, the answer the lenient
    extraction finds in it, else the whole string. "or" in a gold lists solutions ("(11,7) or (7,11)")."""
    if len(gold) > 20 * MAX_ANSWER_CHARS:
        return gold
    if "boxed" in gold or "fbox" in gold:
        boxes = all_boxed(gold)
        if boxes:
            return boxes[0] if len(boxes) == 1 else ", ".join(boxes)
        unclosed = re.search(r"\\{1,2}(?:boxed|fbox)\s*\{(.*)$", gold, re.S)  # a gold's box left open
        if unclosed is not None and unclosed.group(1).strip():
            gold = unclosed.group(1)
    if len(gold) > 30 and len(_WORD.findall(_INLINE_MATH_SPANS.sub(" ", gold))) >= 6:  # a worked solution
        found = extract_answer(gold)
        if found is not None:
            gold = found
    if re.search(r"(?<![A-Za-z])or(?![A-Za-z])", gold) and not re.search(r"[A-Za-z]{2,}\s+or\s+[A-Za-z]{2,}", gold):
        gold = _GOLD_OR.sub(", ", gold)
    return gold


def check(completion: str, gold: str, *, policy: VerifyPolicy = VerifyPolicy(), truncated: bool = False) -> Verdict:
    """Extract the answer from ``completion`` and compare it with ``gold``; never raises."""
    answer: str | None = None
    try:
        candidates = extract_candidates(completion, truncated=truncated, mode=policy.mode)
        if not candidates:
            return Verdict(False, None)
        gold_text = gold_answer(gold)
        if len(candidates) > 1 and not all(equivalent(c, candidates[-1], policy) for c in candidates[:-1]):
            # "3 or 4" hedges between values, which is no answer, unless the gold is exactly
            # those values ("x = 3 or x = 4" solves an equation whose solutions are 3 and 4);
            # a hedge between lists ("\boxed{-5, 2} or \boxed{2}") is never a list
            listed = ", ".join(candidates)
            single = not any(_is_collection(c) for c in candidates)
            distinct = all(
                not equivalent(a, b, policy) for i, a in enumerate(candidates) for b in candidates[i + 1 :]
            )
            correct = single and distinct and _is_collection(gold_text) and equivalent(listed, gold_text, policy)
            return Verdict(correct, listed)
        answer = candidates[-1]
        return Verdict(equivalent(answer, gold_text, policy), answer)
    except Exception as err:  # an internal failure is reported, not raised: see Verdict.error
        return Verdict(False, answer, f"{type(err).__name__}: {err}"[:500])


def verify(completion: str, gold: str, *, policy: VerifyPolicy = VerifyPolicy(), truncated: bool = False) -> bool:
    """Whether ``completion``'s final answer equals ``gold`` (see :func:`check`)."""
    return check(completion, gold, policy=policy, truncated=truncated).correct
