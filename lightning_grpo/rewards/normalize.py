"""Text normalisation for math answers: unicode math to LaTeX, and LaTeX/markup clean-up.

Everything here is string to string and never evaluates anything. ``normalize_answer`` turns an
extracted answer (``"$1,234$."``, ``"\\dfrac{1}{2}\\text{ cm}"``, ``"x = 5"``) into the canonical
spelling the parser in :mod:`lightning_grpo.rewards.verifier` reads, and reports whether the answer
carried a percent sign (the percent policy is applied by the caller). Trailing words are dropped as
units ("5 \\text{ cm}^2", "7 apples") only when they hold no digit and no qualifier: "42 or more",
"5 \\text{ or fewer}" and "42 \\text{ (or 43)}" keep their words, so they never equal 42 or 5.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+"))
_SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5),
           "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅛": (1, 8), "⅜": (3, 8), "⅝": (5, 8), "⅞": (7, 8)}
_SYMBOLS = {
    "√": "\\sqrt ", "∛": "\\sqrt[3]", "π": "\\pi ", "−": "-", "–": "-", "—": "-", "≤": "\\le ", "≥": "\\ge ",
    "≠": "\\ne ", "×": "\\times ", "÷": "\\div ", "·": "\\cdot ", "⋅": "\\cdot ", "∞": "\\infty ", "°": "^\\circ ",
    "±": "\\pm ", "∓": "\\mp ", "∪": "\\cup ", "∩": "\\cap ", "∈": "\\in ", "θ": "\\theta ", "α": "\\alpha ",
    "β": "\\beta ", "γ": "\\gamma ", "λ": "\\lambda ", "μ": "\\mu ", "φ": "\\phi ", "ω": "\\omega ",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ", "⁄": "/", "∶": ":", "％": "%", "＄": "$",
}
_SUPER_RUN = re.compile("[" + "".join(_SUPERSCRIPTS) + "]+")
_SUB_RUN = re.compile("[" + "".join(_SUBSCRIPTS) + "]+")


def normalize_unicode(text: str) -> str:
    """Map unicode math (½ √ π − ≤ × ⁴ ₂, full-width forms, zero-width characters) to ASCII LaTeX."""
    text = text.translate(_ZERO_WIDTH)
    text = _SUPER_RUN.sub(lambda m: "^{" + "".join(_SUPERSCRIPTS[c] for c in m.group()) + "}", text)
    text = _SUB_RUN.sub(lambda m: "_{" + "".join(_SUBSCRIPTS[c] for c in m.group()) + "}", text)
    for char, (num, den) in _VULGAR.items():
        text = text.replace(char, f"\\frac{{{num}}}{{{den}}}")
    for char, latex in _SYMBOLS.items():
        text = text.replace(char, latex)
    return unicodedata.normalize("NFKC", text) if not text.isascii() else text


@dataclass(frozen=True)
class NormalizedAnswer:
    """A canonical answer string and whether a percent sign was removed from it."""

    text: str
    percent: bool


_DELIMITERS = re.compile(r"^\s*(?:\$\$|\$|\\\(|\\\[)(.*?)(?:\$\$|\$|\\\)|\\\])\s*$", re.S)
_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad|\\displaystyle\b|\\(?:big|Big|bigg|Bigg)[lr]?\b|~")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)\b\s*(\\?[()\[\]{}|.]|\\[lr]?[vV]ert|\\langle|\\rangle)")
_FONT = re.compile(r"\\(?:mathbf|mathrm|textbf|textit|mathit|boldsymbol|operatorname|mathnormal)\s*\{")
_TEXT = re.compile(r"\\(?:text|mbox|textrm|textup|textnormal|textsf|hbox)\s*\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\b|\\degree\b|\^\s*\{\s*\\text\{o\}\s*\}")
_PERCENT = re.compile(r"\\?%|\\text\{\s*(?:percent|pct|percentage)\s*\}|\bpercent(?:age)?\b|\bpct\b")
_DOLLAR = re.compile(r"\\\$|\$|\\text\{\s*dollars?\s*\}|\bdollars?\b")
_THOUSANDS = re.compile(r"^([+-]?)(\d{1,3}(?:,\d{3})+|\d{1,3}(?: \d{3})+)(\.\d+)?$")
_TRAILING_UNITS = re.compile(
    r"^(.*?[\d}.)\]])\s+(?:[a-zA-Z]{2,}\.?(?:\^\{?[23]\}?)?)(?:\s+[a-zA-Z]{1,}\.?(?:\^\{?[23]\}?)?)*$"
)
_UNIT_TEXT = re.compile(r"^(.*?\S)\s*\\(?:text|mbox|textrm)\{[^{}]*\}(?:\^\{?[23]\}?)?$")
_LONE_TEXT = re.compile(r"^\\text\{([^{}]*)\}$")
# Words that make trailing text a qualifier or a second answer, not a unit: "42 or more" is no 42.
_NOT_UNITS = re.compile(
    r"\b(?:or|and|nor|not|no|than|more|less|fewer|least|most|over|under|above|below|about|around|approx\w*|"
    r"roughly|nearly|almost|maybe|perhaps|possibly|probably|either|neither|except|if|unless|otherwise|plus|minus|"
    r"wrong|incorrect|false|true|impossible|undefined|none)\b",
    re.I,
)


def _is_unit(text: str) -> bool:
    """Whether trailing ``text`` can be dropped as a unit ("cm", "square feet", "dollars", "in^2")."""
    text = re.sub(r"\^\{?[23]\}?", "", text)
    return not re.search(r"\d", text) and _NOT_UNITS.search(text) is None


def _unwrap_fonts(text: str) -> str:
    """``\\mathbf{x}`` → ``x`` (one brace level at a time, so nested fonts unwrap too)."""
    for _ in range(8):
        match = _FONT.search(text)
        if match is None:
            return text
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        if depth:
            return text
        text = text[: match.start()] + text[match.end() : end - 1] + text[end:]
    return text


# "\\\\frac" written with a doubled backslash (JSON escaped twice): a line break before a command
# name is meaningless in an answer, so it is read as the command
_DOUBLED = re.compile(
    r"(?<!\\)\\\\(?=(?:left|right|frac|dfrac|tfrac|sqrt|text|boxed|pi|cdot|times|infty|le|ge|leq|geq|pm|in|"
    r"cup|mathrm|mathbf|begin|end|circ|theta|alpha|beta|sin|cos|tan|log|ln)\b)"
)
_ARRAY = re.compile(r"\\begin\{array\}\s*\{[lcr|\s]*\}(.*?)\\end\{array\}", re.S)
_RELATIONS = (("\\leqslant", "\\le"), ("\\geqslant", "\\ge"), ("<=", "\\le "), (">=", "\\ge "), ("!=", "\\ne "),
              ("=<", "\\le "), ("=>", "\\ge "))
_AND = re.compile(r"\s*,?\s*\band\b\s*")
# 3.81e-4, 6.02E23: scientific notation only with a decimal point or a capital E ("2e-1" is 2e - 1, Euler's e)
_SCIENTIFIC = re.compile(r"(?<![\w.\\])(\d+\.\d+[eE]|\d+E)([-+]?\d+)(?![\w.])")
# 0.\overline{5}, 1.2\overline{34}: a repeating decimal is an exact fraction
_REPEATING = re.compile(r"(?<![\d.])([-+]?)(\d*)\.(\d*)\\overline\s*\{(\d+)\}(?![\d.])")
_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}


def words_to_number(text: str) -> int | None:
    """An English number written in words ("one hundred and forty", "forty-seven", "Four") as an int;
    None unless every word is a number word (or an "and" between them)."""
    words = [w for w in re.split(r"[\s-]+", text.strip().lower()) if w]
    if not words or words[0] == "and" or words[-1] == "and":
        return None
    total = current = 0
    seen = False
    for word in words:
        if word == "and":
            continue
        if word in _SMALL:
            current += _SMALL[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total += (current or 1) * _SCALES[word]
            current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _repeating(match: re.Match[str]) -> str:
    sign, whole, fixed, cycle = match.groups()
    value = Fraction(int(whole or "0")) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(cycle), (10 ** len(cycle) - 1) * 10 ** len(fixed))
    value = -value if sign == "-" else value
    return f"\\frac{{{value.numerator}}}{{{value.denominator}}}" if value.denominator != 1 else str(value.numerator)


def normalize_answer(answer: str) -> NormalizedAnswer:
    """Canonical spelling of one extracted answer (see the module docstring)."""
    text = _DOUBLED.sub(r"\\", normalize_unicode(answer)).strip()
    for _ in range(3):
        match = _DELIMITERS.match(text)
        if match is None:
            break
        text = match.group(1).strip()
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac")
    text = text.replace("\\leq", "\\le").replace("\\geq", "\\ge").replace("\\neq", "\\ne")
    text = text.replace("\\lt", "<").replace("\\gt", ">").replace("\\dots", "").replace("\\ldots", "")
    for spelling, canonical in _RELATIONS:
        text = text.replace(spelling, canonical)
    text = _ARRAY.sub(r"\\begin{matrix}\1\\end{matrix}", text)
    text = re.sub(r"(?<=\d)\s*\{\s*,\s*\}\s*(?=\d{3}(?!\d))", ",", text)  # 14 {, }916
    text = re.sub(r"(?<=\d),\\!\s*(?=\d{3})", ",", text).replace("\\!", "")
    text = re.sub(r"(?<=\d)\{,\}(?=\d{3})", ",", text)  # 1{,}000
    text = text.replace("\\varnothing", "\\emptyset").replace("\\mathbb{R}", "(-\\infty, \\infty)")
    text = _LEFT_RIGHT.sub(lambda m: "" if m.group(1) == "." else m.group(1), text)
    text = _SPACING.sub(" ", text)
    text = _unwrap_fonts(text)
    text = _DEGREES.sub("", text)
    percent = bool(_PERCENT.search(text))
    text = _PERCENT.sub("", text)
    text = _DOLLAR.sub("", text).strip()
    text = re.sub(r"(?:\\\\|\s)+$", "", text)  # a trailing line break ("185\\\\")
    text = text.rstrip(" .;,").strip()
    lone = _LONE_TEXT.match(text)
    if lone is not None:
        return NormalizedAnswer(_spelled_number(lone.group(1)) or lone.group(1).strip(), percent)
    for _ in range(2):
        unit = _UNIT_TEXT.match(text)
        if unit is not None and _is_unit(text[len(unit.group(1)) :]):
            text = unit.group(1)
    text = _TEXT.sub(r"\1", text).strip()
    units = _TRAILING_UNITS.match(text)
    if units is not None and re.search(r"\d", units.group(1)) and _is_unit(text[len(units.group(1)) :]):
        text = units.group(1)
    text = re.sub(r"(?<=\d)\s*\\(?:,|thinspace)\s*(?=\d{3})", "", text)
    thousands = _THOUSANDS.match(text.strip())
    if thousands is not None:
        sign, digits, fraction = thousands.groups()
        text = sign + digits.replace(",", "").replace(" ", "") + (fraction or "")
    spelled = _spelled_number(text)
    if spelled is not None:
        return NormalizedAnswer(spelled, percent)
    text = _SCIENTIFIC.sub(lambda m: f"{m.group(1)[:-1]} \\times 10^{{{m.group(2)}}}", text)
    text = _REPEATING.sub(_repeating, text)
    text = _AND.sub(", ", text) if re.search(r"\band\b", text) else text  # "6 and 8", "19, 46, and 82"
    return NormalizedAnswer(re.sub(r"\s+", " ", text).strip().rstrip(","), percent)


_NOT_UNIT_WORDS = re.compile(r"\b(?:of|them|those|these|the|an?|it|is|are|was|were|each|more|less)\b", re.I)


def _spelled_number(text: str) -> str | None:
    """A whole answer written in number words, with at most three unit words after it ("forty-seven",
    "Four containers"): its digits; None otherwise (so "one of them" or "forty-seven or so" stay text)."""
    words = text.strip(" .\"'").split()
    for cut in range(len(words), max(0, len(words) - 4), -1):
        value = words_to_number(" ".join(words[:cut]))
        if value is not None:
            rest = " ".join(words[cut:])
            plain_units = not _NOT_UNIT_WORDS.search(rest)
            return str(value) if not rest or (_is_unit(rest) and plain_units) else None
    return None
