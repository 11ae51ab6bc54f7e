"""Finding the final answer in a model completion: the answer-finding policy (docs/verifier.md).

Before anything, the text is cut at the first end-of-turn or chat special token (``<|im_end|>``,
``<|im_start|>``, ``<|endoftext|>``, ``<|eot_id|>``, ``</s>``, …): what follows is another turn, not this
answer; and GLM's ``<|begin_of_box|>x<|end_of_box|>`` is read as ``\\boxed{x}``.

Where an answer is looked for, in this order (``lenient``, the default):

1. The region: with ``</think>``, the text after it (the reasoning is searched only for a box); an
   unclosed ``<think>`` means the reasoning was cut off, so only explicit markers count.
2. Explicit markers; the one that comes LAST in the text wins, and a marker whose content is no value
   passes to the one before it:
   ``\\boxed{}``/``\\fbox{}`` (boxes joined only by commas, "and" or spacing form one list); "the answer
   is …" (also "the answer (arabic numerals) is …"); ``#### …``; "Answer: …" (Minerva's "Final Answer:
   The largest $n$ is 34" gives the value after its last "is"/"="); ``Answer $9$``; ``<answer>…</answer>``
   (a box inside, else its value, else the final claim of its prose); a line "A: 72" (GSM8K few-shot);
   markers in other languages: German "Antwort:/Antwort lautet/ist", French "Réponse :/réponse est",
   Spanish "Respuesta:/respuesta es", Portuguese "Resposta:/resposta é", Italian "Risposta:/risposta è",
   Russian "Ответ:/Ответ —/ответ равен", Chinese "答案是/答案为/答案：", Japanese "答えは/答え：", Korean
   "정답은/답:", Swahili "Jibu ni", Bengali "উত্তর হল", Telugu "సమాధానం", Thai "คำตอบคือ"; a bold last line.
   A marker in another language, and "A:", take a VALUE only (math, a number, ``x = 5``, a short math
   token) followed by at most 40 characters of units to the end of its sentence (for "A:", of its line).
3. Only when there is no marker and the completion was not truncated, the unmarked fallbacks in order:
   the math of the final statement (``… so $x = 7$.``); a completion that is nothing but an answer; the
   number the final line states ("Therefore, the probability is 2/3."); the final claim of prose (the one
   value a complete last sentence states: "That means they have a total of 81 blue balloons.", "… = 6 + 9
   = 15 liters.", "So the total is one hundred and forty."); a program's printed output when the
   completion ends with it (`````output`` holding one value).

What stops each:

- truncation (no end-of-sequence token): disables step 3 (an explicit marker still counts);
- a hedge between different values ("3 or 4", ``\\boxed{3}`` or ``\\boxed{4}``, "17 или 18", "17 或 18") is
  no answer (:func:`extract_candidates` returns the options, for a gold that is exactly those values);
- several final answers: the last marker wins; an unmarked final sentence with two values is none;
- a question back to the user ("Is the answer 28?") and guesses or conditions ("probably", "maybe", "if",
  "unless", "assuming") stop the unmarked fallbacks; after a foreign marker, "or"/"not" in the listed
  languages ("nicht 17, sondern 18", "17 или больше") stop it;
- a marker whose content is no answer ("the answer is correct") passes to the previous marker.

``strict`` accepts only ``\\boxed{}``, ``####`` and "the answer is" (for runs that reward the format
separately and want no credit for anything else). :func:`find_answer` also names the rule that found
the answer (``lightning_grpo.rewards.explain`` prints it). Every search is linear in the text (bounded
look-back, windows of at most 20,000 characters), so megabyte-long completions are cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Mode = Literal["lenient", "strict"]
MODES = ("lenient", "strict")

END_OF_TURN = (
    "<|im_end|>", "<|im_start|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "</s>", "<|end_of_text|>",
    "<end_of_turn>", "<start_of_turn>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>",
    "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "[INST]", "<|eom_id|>",
)
MAX_ANSWER_CHARS = 2000
_BOX_SCAN_CHARS = 4000
_MAX_BOXES_TRIED = 20
_TAIL_CHARS = 20000

_BOX = re.compile(r"\\{1,2}(?:boxed|fbox)\s*")
_HASHES = re.compile(r"####\s*")
_ANSWER_IS = re.compile(
    r"answer\s*(?:\([^()\n]{1,30}\)\s*)?(?:is\b|=)\s*:?|\banswer\s+(?:would|should|will)\s+be\s*:?", re.I
)
# "A: 72" on a line of its own (the GSM8K few-shot format): the value alone on the rest of the line
_A_LINE = re.compile(r"(?:^|\n)[ \t]*A[ \t]*:[ \t]*")
# Answer markers in other languages; each is read by :func:`_marked_value` (a value, then only units)
_FOREIGN_MARKER = re.compile(
    r"\bAntwort\s*(?:lautet|ist|:)|\bréponse\s*(?:est|:)|\brespuesta\s*(?:es|:)|\bresposta\s*(?:é|:)|"
    r"\brisposta\s*(?:è|:)|ответ\s*(?:равен|будет|[:—–-])|答案\s*(?:是|为|為|[:：])|答え\s*(?:は|[:：])|정답\s*(?:은|[:：])|"
    r"(?<![가-힣])답\s*[:：]|\bjibu\s+ni\b|উত্তর\s+হল|సమాధానం|คำตอบคือ",
    re.I,
)
# A value right after a marker: a number (thousands commas, decimals, a fraction, a percent), a name = number,
# or a short math token with a digit or an operator ("x^2", "\\frac{3}{4}")
_VALUE = re.compile(
    r"[-+−]?\\?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?\s*%?(?![\d,.]\d)"
    r"|[A-Za-z]\s*=\s*[-+−]?\d+(?:\.\d+)?(?![\d.])"
    r"|(?=[^\s]*[\d^\\])[A-Za-z0-9^_{}()+\-*/\\.]{1,40}(?![^\s。.!?।,;:，])"
)
_SENTENCE_STOP = re.compile(r"[。.!?।\n]|[.]\s|$")
# Words that make what follows a value a second answer or a qualifier, in the listed languages
_TAIL_HEDGE = re.compile(r"\b(?:or|oder|ou|o|или|либо|not|nicht|pas|no|не)\b|或|还是|または|또는", re.I)
_GLM_BOX = re.compile(r"<\|begin_of_box\|>(.*?)<\|end_of_box\|>", re.S)
_ANSWER_COLON = re.compile(r"\banswer\s*\**\s*:\s*", re.I)
_ANSWER_THEN_MATH = re.compile(
    r"(?:^|\n|[.!?]\s+|\*\*)\s*(?:\**\s*(?:final\s+)?answer)\s*\**\s*(?=\$|\\\(|\\\[)", re.I
)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_INLINE_MATH = re.compile(r"\$\$(?:\\\$|[^$])*?\$\$|\$(?:\\\$|[^$])*?\$|\\\((?:.*?)\\\)|\\\[(?:.*?)\\\]", re.S)
_HOPE = re.compile(r"\.?\s*I\s+hope\s+(?:it|this|that)\s+is\s+correct.*$", re.I | re.S)
_SENTENCE_END = re.compile(r"\.\s+(?=[A-Z(])|\.\s*$|\n")
_BOLD = re.compile(r"\*\*([^*\n]{1,80})\*\*")
_NUMBER = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s*(?:\\?%|percent\b))?"
_BARE_LAST_LINE = re.compile(r"^\s*(?:[=:]\s*)?\\?\$?\s*(" + _NUMBER + r"|[+-]?\d{1,3}(?: \d{3})+)\s*\\?\$?\s*\.?\s*$")
_CONCLUSION = re.compile(
    r"(?:^|(?:[.!?\n$]|\\\])\s*)(?:so|thus|therefore|hence|in\s+total|altogether|in\s+all|finally)\b[^.\n]*?"
    r"[\s=$]\\?\$?(" + _NUMBER + r")\s*(?:[a-zA-Z][a-zA-Z ]{0,30})?\.\s*$",
    re.I,
)
# "... is 2/3.", "... there are 12 sequences ...", "which is 1,000.99€": a number stated by a copula
_STATED = re.compile(
    r"(?:\bis|\bare|\bequals|=|'s|\bwas|\bwere|\bbe)\s+(?:about\s+|approximately\s+)?\\?\$?\s*(" + _NUMBER + r")(?![\d,.]\d)"
)
_HEDGE = re.compile(r"\s+(?:or|and/or)\s+|(?<=[\d)\]}])or(?=[A-Za-z(\[\\])")
_TEXT_OR = re.compile(r"\\(?:text|mbox|textrm)\s*\{\s*(or|and/or)\s*\}")
_OR_NEXT = re.compile(r"\s*,?\s*(?:or|and/or)\s+(\$[^$]{1,200}\$|[^\s.,;$]{1,200})")
_OR_BETWEEN = re.compile(r"^\s*,?\s*(?:or|and/or)\s*$")
# What may stand between boxes that list one answer's parts: spacing, commas, "and", a few words
_JOIN_NOISE = re.compile(r"\\q?quad|\\[,;:! ]|\$|\\\(|\\\)|\\\[|\\\]|&|\\\\|\\text\s*\{([^{}]*)\}|\\mbox\s*\{([^{}]*)\}")
# Marker contents that are no answer: "the answer is correct", "the answer is as follows"
_NOT_AN_ANSWER = re.compile(
    r"^(?:the\s+)?(?:correct|incorrect|wrong|right|below|above|as\s+follows|follows|clear|obvious|same|"
    r"simple|straightforward|given|unclear|unknown|not\b|this\b|that\b|in\b|to\b|we\b|option\b|"
    r"(?:final\s+)?answers?\b|solution\b|step\b)",
    re.I,
)
_COURTESY = re.compile(r"[\d$\\]")
# Words that make an unmarked final statement a guess or a condition, not an answer
_UNSURE = re.compile(r"\b(?:probably|maybe|perhaps|possibly|might|guess|if|unless|assuming)\b", re.I)


class _Hedged(Exception):
    """The answer found hedges between values (``options``, as written); it is no single answer."""

    def __init__(self, options: list[str]) -> None:
        super().__init__(" or ".join(options))
        self.options = tuple(options)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"extraction mode must be one of {MODES}, got {mode!r}")


@dataclass(frozen=True)
class Found:
    """What :func:`find_answer` found: the ``answer`` as written (None if none), the ``rule`` that
    found it (or why there is none: ``"hedge"``, ``"none"``), and a hedge's ``options``."""

    answer: str | None
    rule: str
    options: tuple[str, ...] = ()


def find_answer(completion: str, *, truncated: bool = False, mode: Mode = "lenient") -> Found:
    """The final answer in ``completion`` and the rule of the answer-finding policy that found it."""
    _check_mode(mode)
    try:
        answer, rule = _extract(completion, truncated, mode)
    except _Hedged as hedge:
        return Found(None, "hedge", hedge.options)
    return Found(answer, rule if answer is not None else "none")


def extract_answer(completion: str, *, truncated: bool = False, mode: Mode = "lenient") -> str | None:
    """The final answer in ``completion`` as written (un-normalised), or None when there is none.

    ``truncated`` (no end-of-sequence token within the budget) disables the unmarked fallbacks.
    A hedge between different spellings ("3 or 4", "\\frac12 or 0.5") is None.
    """
    return find_answer(completion, truncated=truncated, mode=mode).answer


def extract_candidates(completion: str, *, truncated: bool = False, mode: Mode = "lenient") -> tuple[str, ...]:
    """``()`` when ``completion`` has no answer, ``(answer,)`` when it has one, and the options
    (as written) when its final answer hedges between several: the caller decides whether they are
    all the same value."""
    found = find_answer(completion, truncated=truncated, mode=mode)
    if found.rule == "hedge":
        return found.options
    return () if found.answer is None else (found.answer,)


def cut_at_end_of_turn(text: str) -> str:
    """``text`` up to its first end-of-turn or chat special token."""
    for marker in END_OF_TURN:
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    return text


def _extract(completion: str, truncated: bool, mode: str) -> tuple[str | None, str]:
    text = _GLM_BOX.sub(lambda m: "\\boxed{" + m.group(1) + "}", cut_at_end_of_turn(completion))
    if "</think>" in text:
        reasoning, _, after = text.rpartition("</think>")
        found = _search(after, allow_fallback=not truncated, mode=mode)
        return found if found[0] is not None else (_boxed(reasoning), "box inside the reasoning")
    if "<think>" in text:
        return _search(text, allow_fallback=False, mode=mode)
    return _search(text, allow_fallback=not truncated, mode=mode)


def _search(region: str, allow_fallback: bool, mode: str) -> tuple[str | None, str]:
    tail = region[-_TAIL_CHARS:]
    for _, rule, reader in sorted(_markers(tail, mode), key=lambda m: m[0], reverse=True):
        found = reader()
        if found is not None:
            return found, rule
    if mode == "strict" or not allow_fallback:
        return None, "none"
    for rule, fallback in _FALLBACKS:
        found = fallback(tail)
        if found is not None:
            return found, rule
    return None, "none"


def _markers(text: str, mode: str) -> list[tuple[int, str, Callable[[], str | None]]]:
    """Every explicit answer marker as (position, rule, reader); a reader returns the answer or None."""
    markers: list[tuple[int, str, Callable[[], str | None]]] = []
    boxes = _boxes(text)
    if boxes:
        markers.append((boxes[0][0], "\\boxed{}", lambda: _box_answer(text, boxes)))
    plain = text.replace("**", "  ")  # same length: positions agree with ``text``
    for match in _ANSWER_IS.finditer(plain):
        markers.append((match.start(), "'the answer is'", lambda m=match: _phrase(plain, m.end())))
    for match in _HASHES.finditer(plain):
        markers.append((match.start(), "'####'", lambda m=match: _phrase(plain, m.end())))
    if mode == "strict":
        return markers
    for match in _ANSWER_COLON.finditer(plain):
        markers.append((match.start(), "'Answer:'", lambda m=match: _statement(plain, m.end())))
    for match in _ANSWER_THEN_MATH.finditer(plain):
        markers.append((match.end(), "'Answer' then math", lambda m=match: _phrase(plain, m.end())))
    for match in _ANSWER_TAG.finditer(text):
        markers.append((match.start(), "<answer> tag", lambda m=match: _tagged(m.group(1))))
    for match in _A_LINE.finditer(text):
        markers.append((match.end(), "'A:' line", lambda m=match: _marked_value(text, m.end(), whole_line=True)))
    for match in _FOREIGN_MARKER.finditer(text):
        rule = f"marker {match.group().strip()!r}"
        markers.append((match.start(), rule, lambda m=match: _marked_value(text, m.end(), whole_line=False)))
    bold = _bold_last_line(text)
    if bold is not None:
        markers.append((bold[0], "bold last line", bold[1]))
    return markers


def _content_ok(candidate: str | None) -> str | None:
    """A marker's content is an answer only when it has math, a digit or is a short word answer."""
    if candidate is None:
        return None
    bare = candidate.strip().strip("\"'`").strip()
    if not bare or _NOT_AN_ANSWER.match(bare):
        return None
    if re.search(r"[\d\\$^_=()\[\]{}<>]", bare) or len(bare.split()) <= 3:
        return candidate
    return None


def _accept(candidate: str) -> str | None:
    """Strip decoration; refuse empty and oversized answers; raise ``_Hedged`` on a hedge."""
    candidate = re.sub(r"\\+\"", "", candidate.strip())  # \"$12$ and $13$\" (escaped quotes)
    candidate = candidate.strip().strip("*").strip()
    while len(candidate) > 1 and candidate[0] == candidate[-1] and candidate[0] in "\"'`":  # "7", not f'
        candidate = candidate[1:-1].strip()
    candidate = re.sub(r"[\s.;,:]+$", "", candidate)
    for opening, closing in (("\\[", "\\]"), ("\\(", "\\)")):  # "\[Answer: 241\]": the closing is no part
        if candidate.endswith(closing) and opening not in candidate:
            candidate = re.sub(r"[\s.;,:]+$", "", candidate[: -len(closing)])
    if not candidate or len(candidate) > MAX_ANSWER_CHARS:
        return None
    parts = [p.strip(" $.,;") for p in _HEDGE.split(_TEXT_OR.sub(r" \1 ", candidate))]
    if len(parts) > 1 and all(re.search(r"[\d\\]", p) for p in parts) and len(set(parts)) > 1:
        raise _Hedged(parts)
    return candidate


def _either(first: str, second: str) -> str | None:
    """``first`` hedged with ``second`` ("$3$ or $4$"): the answer when both are spelled the same."""
    options = [_accept(first), _accept(second)]
    if None in options:
        return None
    if options[0] != options[1]:
        raise _Hedged([o for o in options if o is not None])
    return options[0]


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at ``text[start]`` and the index after it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth, escaped = 0, False
    for pos in range(start, min(len(text), start + _BOX_SCAN_CHARS)):
        char = text[pos]
        if escaped:  # \{ and \} are braces of a set; \\} is a line break, then a closing brace
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : pos], pos + 1
    return None


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """Up to ``_MAX_BOXES_TRIED`` complete boxes, last first: (start, end, content)."""
    found: list[tuple[int, int, str]] = []
    starts = [m for m in _BOX.finditer(text)][-_MAX_BOXES_TRIED:]
    for match in reversed(starts):
        group = _braced(text, match.end())
        if group is not None:
            found.append((match.start(), group[1], group[0]))
        elif match.end() < len(text) and re.match(r"[\w.-]", text[match.end()]):
            token = re.match(r"-?[\w.]+", text[match.end() :])
            if token is not None:
                found.append((match.start(), match.end() + token.end(), token.group()))
    return found


def last_box(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` of the whole ``text`` (nested braces
    read), without any hedge check: for reading golds, which are not model output. None when there is none."""
    boxes = _boxes(text)
    return boxes[0][2].strip() if boxes else None


def all_boxed(text: str) -> list[str]:
    """The contents of every complete box in (the tail of) ``text``, in order, without repeats."""
    contents: list[str] = []
    for _, _, content in reversed(_boxes(text[-_TAIL_CHARS:])):
        if content.strip() and content.strip() not in contents:
            contents.append(content.strip())
    return contents


def find_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{}``/``\\fbox{}`` in (the tail of) ``text``;
    None when there is none or the last two hedge ("``\\boxed{3}`` or ``\\boxed{4}``")."""
    try:
        return _boxed(text)
    except _Hedged:
        return None


def _boxed(text: str) -> str | None:
    text = text[-_TAIL_CHARS:]
    boxes = _boxes(text)
    return _box_answer(text, boxes) if boxes else None


def _joined(between: str) -> bool:
    """Whether the text between two boxes lists them as parts of one answer: spacing, commas,
    semicolons, "and", or at most four short words together with "and" ("for part (a) and")."""
    between = re.sub(r"[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?:\$|\\\(|\\\[)?\s*$", "", between)  # "and $y_2 = $"
    if len(between) > 60 or re.search(r"[.!?]\s|\n\s*\n", between):
        return False
    words = _JOIN_NOISE.sub(lambda m: f" {m.group(1) or m.group(2) or ''} ", between)
    words = re.sub(r"[,;]", " , ", words).split()
    if not words or all(w == "," for w in words):
        return True
    if "and" not in words:
        return False
    return len([w for w in words if w not in (",", "and")]) <= 4 and not re.search(r"\d|=", " ".join(words))


def _box_answer(text: str, boxes: list[tuple[int, int, str]]) -> str | None:
    """The last box; with the boxes listed right before it (``\\boxed{1}, \\boxed{2}``) a list;
    ``\\boxed{3} or \\boxed{4}`` a hedge."""
    start, _, content = boxes[0]
    if len(boxes) > 1:
        prev_start, prev_end, prev_content = boxes[1]
        between = text[prev_end:start]
        if len(between) <= 40 and re.search(r"\bor\b", between) and prev_content.strip() != content.strip():
            raise _Hedged([prev_content.strip(), content.strip()])
    group = [content.strip()]
    for (prev_start, prev_end, prev_content), (next_start, _, _) in zip(boxes[1:], boxes):
        if prev_end > next_start or not _joined(text[prev_end:next_start]):  # nested, or not a list
            break
        if prev_content.strip() and prev_content.strip() not in group:
            group.insert(0, prev_content.strip())
    if len(group) > 1:
        return _accept(", ".join(group))
    return _accept(content)


def _phrase(text: str, start: int) -> str | None:
    """What follows a marker at ``start``: a math span, else the rest of its sentence."""
    rest = _HOPE.sub("", text[start : start + 4 * MAX_ANSWER_CHARS]).lstrip()
    inline = _INLINE_MATH.match(rest)
    if inline is not None:
        alternative = _OR_NEXT.match(rest, inline.end())
        if alternative is not None:
            return _either(inline.group(0), alternative.group(1))
        return _content_ok(_accept(inline.group(0)))
    end = _SENTENCE_END.search(rest)
    return _content_ok(_accept(rest[: end.start()] if end is not None else rest))


def _statement(text: str, start: int) -> str | None:
    """The content of "Answer: …"/"Final Answer: …". A prose statement ("The largest $n$ is 34",
    "Jane started 3 hours ago") gives the value after its last "is"/"=", else its only number or
    math; "Final Answer: The final answer is …" is read by the "answer is" marker inside it."""
    rest = _HOPE.sub("", text[start : start + 4 * MAX_ANSWER_CHARS]).lstrip()
    inline = _INLINE_MATH.match(rest)
    if inline is not None or not re.match(r"[A-Za-z]{2,}", rest):
        return _phrase(text, start)
    end = _SENTENCE_END.search(rest)
    sentence = rest[: end.start()] if end is not None else rest
    if re.search(r"answer\s+is", sentence, re.I):
        return None
    spans = list(_INLINE_MATH.finditer(sentence))
    masked = _INLINE_MATH.sub(lambda m: "#" * len(m.group()), sentence)  # an "=" inside math is no copula
    copula = list(re.finditer(r"\b(?:is|are|equals|was|were)\b|=", masked))
    if copula:
        value = sentence[copula[-1].end() :].strip()
        found = _phrase(value, 0) if value else None
        if found is not None:
            return found
    outside = _INLINE_MATH.sub(" ", sentence)
    numbers = re.findall(_NUMBER, outside)
    if len(numbers) == 1 and not spans:
        return _accept(numbers[0])
    if len(spans) == 1 and not numbers:
        return _content_ok(_accept(spans[0].group(0)))
    return None


def _tagged(content: str) -> str | None:
    """``<answer>…</answer>``: a box inside it, else its content, else (prose) the value its final
    sentence claims (see :func:`_final_claim`)."""
    inner = _boxed(content)
    if inner is not None:
        return inner
    plain = _content_ok(_accept(content))
    if plain is not None and len(re.findall(r"[A-Za-z]{2,}", _INLINE_MATH.sub(" ", plain))) < 2:  # no prose
        return plain
    claim = _final_claim(content.strip() if re.search(r"[.!]\s*$", content) else content.strip() + ".")
    return claim if claim is not None else plain


def _marked_value(text: str, start: int, whole_line: bool) -> str | None:
    """The value right after a marker ("Ответ: 95 минут", "答案是 42", "A: 72"): math, or a number or a
    short math token, followed up to the end of its sentence by at most 40 characters of units (no
    digit, no "or"/"not" in the listed languages). With ``whole_line`` ("A:") nothing but units and
    punctuation may follow on the line."""
    rest = text[start : start + 400].lstrip(" \t:：—–-")
    inline = _INLINE_MATH.match(rest)
    value = inline if inline is not None else _VALUE.match(rest)
    if value is None or not value.group().strip():
        return None
    after = rest[value.end() :]
    line = after.split("\n", 1)[0]
    tail = line[: _SENTENCE_STOP.search(line).start()]
    if whole_line:
        tail = line.rstrip(" .!。")
    if len(tail) > 40 or re.search(r"\d", tail) or _TAIL_HEDGE.search(tail):
        return None
    if whole_line and re.search(r"[.!?]\s+\S", line):
        return None
    return _accept(value.group().replace("−", "-"))


def _bold_last_line(text: str) -> tuple[int, object] | None:
    lines = list(re.finditer(r"[^\n]*\S[^\n]*", text[-4000:]))
    if not lines:
        return None
    last = lines[-1]
    bolds = list(_BOLD.finditer(last.group()))
    if not bolds:
        return None
    position = len(text) - len(text[-4000:]) + last.start() + bolds[-1].start()
    if len(bolds) > 1 and _OR_BETWEEN.match(last.group()[bolds[-2].end() : bolds[-1].start()]):
        return position, lambda: _either(bolds[-2].group(1), bolds[-1].group(1))
    return position, lambda: _content_ok(_accept(bolds[-1].group(1)))


def _final_statement_math(text: str) -> str | None:
    """The math of the final statement: its last math span (with the spans listed right before it,
    "$-2$ and $1$"), when nothing but courtesy text without digits follows it."""
    window = text
    spans = [span for span in _INLINE_MATH.finditer(window) if span.end() > len(window) - 4000]
    if not spans:
        return None
    last = spans[-1]
    after = _HOPE.sub("", window[last.end() :])
    if _COURTESY.search(after):
        return None
    if re.search(r"[?]", after):  # "... $x = 7$? Let me check." is a question, not an answer
        return None
    group = [last]
    for previous in reversed(spans[:-1]):
        between = window[previous.end() : group[0].start()]
        if _OR_BETWEEN.match(between) or re.fullmatch(r"\s*(?:,|and|,\s*and)\s*", between):
            group.insert(0, previous)
        else:
            break
    if len(group) == 2 and _OR_BETWEEN.match(window[group[0].end() : group[1].start()]):
        return _either(group[0].group(0), group[1].group(0))
    if len(group) > 1:
        if any(_OR_BETWEEN.match(window[a.end() : b.start()]) for a, b in zip(group, group[1:])):
            raise _Hedged([span.group(0) for span in group])
        return _accept(", ".join(span.group(0).strip("$") for span in group))
    return _accept(last.group(0))


def _whole_answer(text: str) -> str | None:
    """A completion that is nothing but an answer ("-\\frac{10}{9}", ".4", "28 percent", "x = 5"): at
    most 200 characters on one line, with at most one word that is not a LaTeX command."""
    stripped = text.strip()
    if not stripped or len(stripped) > 200 or "\n" in stripped or re.search(r"[.!?]\s+\S", stripped):
        return None
    words = re.findall(r"(?<![\\A-Za-z])[A-Za-z]{3,}", re.sub(r"\\(?:begin|end)\s*\{\w*\}", " ", stripped))
    if len(words) > 1 or not re.search(r"[\d=^\\+\-*/()]", stripped):
        return None
    return _accept(stripped)


def _bare_number(text: str) -> str | None:
    lines = [line for line in text[-2000:].splitlines() if line.strip()]
    if not lines:
        return None
    bare = _BARE_LAST_LINE.match(lines[-1])
    if bare is not None:
        return _accept(bare.group(1))
    line = _HOPE.sub("", lines[-1][-400:]).rstrip()
    if _UNSURE.search(line):  # "So the total is probably 18.", "If it includes tax, the total is 18."
        return None
    line = line if line.endswith((".", "!")) else line + "."
    conclusion = _CONCLUSION.search(line)
    if conclusion is not None:
        hedge = re.search(r"(" + _NUMBER + r")\s*,?\s*(?:or|and/or)\s+\\?\$?\s*$", line[: conclusion.start(1)])
        if hedge is not None:
            return _either(hedge.group(1), conclusion.group(1))
        return _accept(conclusion.group(1))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", line) if s.strip()]
    if not sentences:
        return None
    last = sentences[-1]
    stated = list(_STATED.finditer(last))
    if not stated:
        return None
    tail = last[stated[-1].end() :]
    if re.search(r"\d", tail) or re.search(r"\bor\b", tail) or re.search(r"[.!?;:]\s*\S", tail):
        return None  # a later number, a hedge, or a later statement ("= 2. and then")
    hedge = re.search(r"(" + _NUMBER + r")\s*,?\s*(?:or|and/or)\s*$", last[: stated[-1].start()])
    if hedge is not None:
        return _either(hedge.group(1), stated[-1].group(1))
    return _accept(stated[-1].group(1))


_NUMBER_WORD = (
    r"(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    r"seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|billion)"
)
_WORDS_NUMBER = re.compile(r"\b" + _NUMBER_WORD + r"(?:(?:[\s-]+(?:and[\s-]+)?)" + _NUMBER_WORD + r")*\b", re.I)
_CLAIM_NUMBER = re.compile(
    r"(?<![\w.])\\?\$?\s*(?:\d{1,2}:\d{2}(?::\d{2})?|[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?\s*%?)(?![\d,]\d)"
)
_CLAIM_HEDGE = re.compile(
    r"\b(?:or|maybe|perhaps|probably|possibly|approximately|about|around|roughly|nearly|almost|if|unless|not|"
    r"cannot|wrong|incorrect|assume|assuming|suppose|let|we|need|must|should|would|could|can)\b|n't\b|\?",
    re.I,
)
_CONCLUDES = re.compile(r"^.*\b(?:so|thus|therefore|hence|which means|that means|this means)\b,?\s*", re.I)
_COURTESY_SENTENCE = re.compile(r"\b(?:hope|helps?|let me know|feel free|questions?|glad|happy to|enjoy)\b", re.I)
_OPERATOR = re.compile(r"[-+*/×÷=^]|\\(?:times|cdot|div)\b|\bx\b")


def _final_claim(text: str) -> str | None:
    """The one value the final sentence of unmarked prose states ("That means they have a total of 81
    blue balloons.", "So the total is one hundred and forty.", "... = 6 + 9 = 15 liters."). The sentence
    must be complete (it ends with "." or "!"; a courtesy sentence after it is dropped), hold no question
    and no hedge or instruction word, and, after its last "so"/"thus"/"that means", either end an
    arithmetic chain (the value after its last "=", nothing numeric after it) or hold exactly one number
    (digits, a clock time or English number words) that no operator touches."""
    lines = [line for line in _HOPE.sub("", text[-2000:]).splitlines() if line.strip()]
    if not lines:
        return None
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", lines[-1].strip()) if s.strip()]
    while len(sentences) > 1 and _COURTESY_SENTENCE.search(sentences[-1]) and not re.search(r"\d", sentences[-1]):
        sentences.pop()
    if not sentences:
        return None
    sentence = sentences[-1].strip()
    if len(sentence) > 400 or not re.search(r"[.!]\s*$", sentence) or _CLAIM_HEDGE.search(sentence):
        return None
    clause = _CONCLUDES.sub("", sentence.replace("**", ""))
    math_free = _INLINE_MATH.sub(lambda m: m.group().strip("$").replace("\\(", "").replace("\\)", ""), clause)
    if "=" in math_free:
        last = math_free[math_free.rindex("=") + 1 :]
        value = _CLAIM_NUMBER.match(last.lstrip(" $\\"))
        if value is None or _CLAIM_NUMBER.search(last.lstrip(" $\\")[value.end() :]):
            return None
        return _accept(value.group().strip(" $\\").replace("−", "-"))
    numbers = [m for m in _CLAIM_NUMBER.finditer(math_free) if not _touches_operator(math_free, m.start(), m.end())]
    words = list(_WORDS_NUMBER.finditer(math_free))
    if len(numbers) + len(words) != 1 or len(list(_CLAIM_NUMBER.finditer(math_free))) != len(numbers):
        return None
    found = numbers[0].group() if numbers else words[0].group()
    return _accept(found.strip(" $\\").replace("−", "-"))


def _touches_operator(text: str, start: int, end: int) -> bool:
    before, after = text[max(0, start - 3) : start], text[end : end + 3]
    return bool(_OPERATOR.search(before.strip()[-1:] if before.strip() else "") or _OPERATOR.match(after.strip()[:1]))


_OUTPUT_VALUE = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?|[-+]?\d+/\d+")
_OUTPUT_LAST = re.compile(r"```python.*?```\s*```output[ \t]*\n?(.*?)\n?```\s*$", re.S)


def _program_output(text: str) -> str | None:
    """A completion that ends with a program and its printed output (program-of-thought): the output,
    when it is one short line holding one value."""
    match = _OUTPUT_LAST.search(text[-4000:])
    if match is None:
        return None
    output = match.group(1).strip()
    if "\n" in output or len(output) > 40 or not _OUTPUT_VALUE.fullmatch(output):
        return None
    return _accept(output)


# The unmarked fallbacks, in the order they are tried (a completion that was not truncated only)
_FALLBACKS: tuple[tuple[str, Callable[[str], str | None]], ...] = (
    ("math of the final statement", _final_statement_math),
    ("whole completion is an answer", _whole_answer),
    ("number of the final line", _bare_number),
    ("final claim of prose", _final_claim),
    ("program output at the end", _program_output),
)
