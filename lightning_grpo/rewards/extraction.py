"""Finding the final answer in a model completion.

Rules, in order of precedence (see :func:`extract_answer`):

1. Text after the first end-of-turn marker (``<|im_end|>``, ``<|endoftext|>``, ``<|eot_id|>``,
   ``</s>``) is ignored.
2. When ``</think>`` closes the reasoning, the text after it is searched first; the reasoning is
   searched only for an explicit ``\\boxed{}``. An unclosed ``<think>`` means the reasoning was cut
   off, so only explicit answer markers count.
3. Within a region: the last ``\\boxed{}``/``\\fbox{}`` (nested braces), then whichever of "(the
   final) answer is …", "Answer: …" and ``#### …`` comes last, then a markdown-bold last line, and,
   last of all, a bare number, only where the completion clearly ends with it (the last line is
   just the number, or a concluding sentence "So/Thus/Therefore … 42." ending with a period) and
   the completion was not truncated.

A hedge between different answers ("3 or 4", ``$3$ or $4$``, ``\\boxed{3}`` or ``\\boxed{4}``,
``**3** or **4**``) is no answer. :func:`extract_candidates` returns a hedge's options instead, so
that the verifier can accept one whose options are all the same value ("\\frac12 or 0.5").
Every search is linear in the text (bounded look-back), so megabyte-long completions are cheap.
"""

from __future__ import annotations

import re

END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>", "<|end_of_text|>", "<end_of_turn>")
MAX_ANSWER_CHARS = 2000
_BOX_SCAN_CHARS = 4000
_MAX_BOXES_TRIED = 20
_TAIL_CHARS = 20000

_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_HASHES = re.compile(r"####\s*")
_ANSWER = re.compile(r"answer\s*(?:is|:|=)\s*:?|\banswer\s+(?:would\s+be|should\s+be|will\s+be)\s*:?", re.I)
_INLINE_MATH = re.compile(r"(?:\$\$?|\\\(|\\\[)(?:\\\$|[^$])*?(?:\$\$?|\\\)|\\\])", re.S)
_HOPE = re.compile(r"\.?\s*I\s+hope\s+it\s+is\s+correct.*$", re.I | re.S)
_SENTENCE_END = re.compile(r"\.\s+(?=[A-Z(])|\.\s*$|\n")
_BOLD = re.compile(r"\*\*([^*\n]{1,80})\*\*")
_NUMBER = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_BARE_LAST_LINE = re.compile(r"^\s*(?:[=:]\s*)?\\?\$?\s*(" + _NUMBER + r")\s*\\?\$?\s*\.?\s*$")
_CONCLUSION = re.compile(
    r"(?:^|[.!?\n]\s*)(?:so|thus|therefore|hence|in\s+total|altogether|in\s+all|finally)\b[^.\n]*?"
    r"[\s=$]\\?\$?(" + _NUMBER + r")\s*(?:[a-zA-Z][a-zA-Z ]{0,30})?\.\s*$",
    re.I,
)
_HEDGE = re.compile(r"\s+(?:or|and/or)\s+")
_TEXT_OR = re.compile(r"\\(?:text|mbox|textrm)\s*\{\s*(or|and/or)\s*\}")
_OR_NEXT = re.compile(r"\s*,?\s*(?:or|and/or)\s+(\$[^$]{1,200}\$|[^\s.,;$]{1,200})")
_OR_BETWEEN = re.compile(r"^\s*,?\s*(?:or|and/or)\s*$")


class _Hedged(Exception):
    """The answer found hedges between values (``options``, as written); it is no single answer."""

    def __init__(self, options: list[str]) -> None:
        super().__init__(" or ".join(options))
        self.options = tuple(options)


def extract_answer(completion: str, *, truncated: bool = False) -> str | None:
    """The final answer in ``completion`` as written (un-normalised), or None when there is none.

    ``truncated`` (no end-of-sequence token within the budget) disables the bare-number fallback.
    A hedge between different spellings ("3 or 4", "\\frac12 or 0.5") is None.
    """
    try:
        return _extract(completion, truncated)
    except _Hedged:
        return None


def extract_candidates(completion: str, *, truncated: bool = False) -> tuple[str, ...]:
    """``()`` when ``completion`` has no answer, ``(answer,)`` when it has one, and the options
    (as written) when its final answer hedges between several: the caller decides whether they are
    all the same value."""
    try:
        answer = _extract(completion, truncated)
    except _Hedged as hedge:
        return hedge.options
    return () if answer is None else (answer,)


def _extract(completion: str, truncated: bool) -> str | None:
    text = completion
    for marker in END_OF_TURN:
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    if "</think>" in text:
        reasoning, _, after = text.rpartition("</think>")
        found = _search(after, allow_bare_number=not truncated)
        return found if found is not None else _boxed(reasoning)
    if "<think>" in text:
        return _search(text, allow_bare_number=False)
    return _search(text, allow_bare_number=not truncated)


def _search(region: str, allow_bare_number: bool) -> str | None:
    tail = region[-_TAIL_CHARS:]
    for finder in (_boxed, _last_phrase, _bold_last_line):
        found = finder(tail)
        if found is not None:
            return found
    return _bare_number(tail) if allow_bare_number else None


def _accept(candidate: str) -> str | None:
    """Strip decoration; refuse empty and oversized answers; raise ``_Hedged`` on a hedge."""
    candidate = candidate.strip().strip("*").strip()
    candidate = re.sub(r"[\s.;,:]+$", "", candidate)
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
    depth = 0
    for pos in range(start, min(len(text), start + _BOX_SCAN_CHARS)):
        char = text[pos]
        if char == "{" and text[pos - 1] != "\\":
            depth += 1
        elif char == "}" and text[pos - 1] != "\\":
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
    if not boxes:
        return None
    start, _, content = boxes[0]
    if len(boxes) > 1:
        prev_start, prev_end, prev_content = boxes[1]
        between = text[prev_end:start]
        if len(between) <= 40 and re.search(r"\bor\b", between) and prev_content.strip() != content.strip():
            raise _Hedged([prev_content.strip(), content.strip()])
    return _accept(content)


def _last_phrase(text: str) -> str | None:
    """What follows the last "answer is"/"Answer:"/"####", up to the end of its sentence."""
    text = text.replace("**", "")
    ends = [m.end() for pattern in (_ANSWER, _HASHES) for m in pattern.finditer(text)]
    if not ends:
        return None
    rest = _HOPE.sub("", text[max(ends) :]).lstrip()
    inline = _INLINE_MATH.match(rest)
    if inline is not None:
        alternative = _OR_NEXT.match(rest, inline.end())
        if alternative is not None:
            return _either(inline.group(0), alternative.group(1))
        return _accept(inline.group(0))
    end = _SENTENCE_END.search(rest)
    return _accept(rest[: end.start()] if end is not None else rest)


def _bold_last_line(text: str) -> str | None:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    bolds = list(_BOLD.finditer(lines[-1]))
    if not bolds:
        return None
    if len(bolds) > 1 and _OR_BETWEEN.match(lines[-1][bolds[-2].end() : bolds[-1].start()]):
        return _either(bolds[-2].group(1), bolds[-1].group(1))
    return _accept(bolds[-1].group(1))


def _bare_number(text: str) -> str | None:
    lines = [line for line in text[-2000:].splitlines() if line.strip()]
    if not lines:
        return None
    bare = _BARE_LAST_LINE.match(lines[-1])
    if bare is not None:
        return _accept(bare.group(1))
    line = lines[-1][-400:]
    conclusion = _CONCLUSION.search(line)
    if conclusion is None:
        return None
    hedge = re.search(r"(" + _NUMBER + r")\s*,?\s*(?:or|and/or)\s+\\?\$?\s*$", line[: conclusion.start(1)])
    if hedge is not None:
        return _either(hedge.group(1), conclusion.group(1))
    return _accept(conclusion.group(1))
