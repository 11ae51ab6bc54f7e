"""Prompt templates that ask for a ``\\boxed{}`` answer, and gold-answer helpers for GSM8K.

Templates are ``str.format`` strings with one field, ``{question}``.
"""

from __future__ import annotations

import re

BOXED_TEMPLATE = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
GSM8K_TEMPLATE = "{question}\nSolve step by step and give the final number within \\boxed{{}}."

_CALCULATOR = re.compile(r"<<[^<>]*>>")


def strip_calculator_annotations(text: str) -> str:
    """Remove GSM8K's calculator annotations: ``"48/2 = <<48/2=24>>24"`` → ``"48/2 = 24"``."""
    return _CALCULATOR.sub("", text)


def gsm8k_gold(answer_field: str) -> str:
    """The gold answer of a GSM8K ``answer`` field: the text after the last ``####``, commas removed."""
    if "####" not in answer_field:
        raise ValueError(f"no '####' in GSM8K answer field: {answer_field[-80:]!r}")
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "")
