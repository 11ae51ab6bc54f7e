"""Why a reward was 0 (or 1): ``COMPLETION GOLD [--explain]`` prints the verifier's verdict, and with
``--explain`` the answer it found, the rule of the answer-finding policy that found it, the gold's
answer and both normalised forms.

Run as ``python -m lightning_grpo.rewards.explain COMPLETION GOLD --explain`` (``-`` as COMPLETION
reads it from standard input; ``@path`` reads it from a file). :func:`main` returns the exit code: 0
whatever the verdict (the verdict is printed, not signalled), 2 for bad arguments or an unreadable file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning_grpo.rewards.extraction import MODES, find_answer
from lightning_grpo.rewards.normalize import normalize_answer
from lightning_grpo.rewards.verifier import VerifyPolicy, check, gold_answer


def _read_completion(argument: str) -> str:
    """The completion: the argument itself, standard input for ``-``, a file's text for ``@path``."""
    if argument == "-":
        return sys.stdin.read()
    if argument.startswith("@"):
        path = Path(argument[1:])
        if not path.is_file():
            raise FileNotFoundError(f"no completion file at {path}")
        return path.read_text(encoding="utf-8")
    return argument


def explain(completion: str, gold: str, policy: VerifyPolicy = VerifyPolicy(), truncated: bool = False) -> list[str]:
    """The report lines: found answer and rule, gold answer, normalised forms, verdict."""
    found = find_answer(completion, truncated=truncated, mode=policy.mode)
    gold_text = gold_answer(gold)
    verdict = check(completion, gold, policy=policy, truncated=truncated)
    if found.rule == "hedge":
        answer_line = f"answer:      none: a hedge between {', '.join(repr(o) for o in found.options)}"
    elif found.answer is None:
        reason = "the completion was truncated and has no explicit marker" if truncated else "no rule found one"
        answer_line = f"answer:      none ({reason})"
    else:
        answer_line = f"answer:      {found.answer!r}  (rule: {found.rule})"
    lines = [answer_line, f"gold:        {gold_text!r}" + ("" if gold_text == gold else f"  (from {gold!r})")]
    if found.answer is not None:
        normal = normalize_answer(found.answer)
        lines.append(f"normalised:  answer {normal.text!r}{' (percent)' if normal.percent else ''}")
    gold_normal = normalize_answer(gold_text)
    lines.append(f"normalised:  gold {gold_normal.text!r}{' (percent)' if gold_normal.percent else ''}")
    if verdict.error is not None:
        lines.append(f"error:       {verdict.error}")
    lines.append(f"verdict:     {'correct' if verdict.correct else 'incorrect'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring); returns the exit code."""
    parser = argparse.ArgumentParser(prog="lightning-grpo verify", description=__doc__.splitlines()[0])
    parser.add_argument("completion", help="the model's completion; '-' reads standard input, '@path' a file")
    parser.add_argument("gold", help="the gold answer (or a worked solution with \\boxed{})")
    parser.add_argument("--explain", action="store_true", help="print the answer found, its rule and normal forms")
    parser.add_argument("--mode", choices=MODES, default="lenient", help="answer finding (default: lenient)")
    parser.add_argument("--percent", choices=("strip", "either", "strict"), default="strip")
    parser.add_argument("--truncated", action="store_true", help="the completion hit the token budget")
    try:
        args = parser.parse_args(argv)
        completion = _read_completion(args.completion)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except (OSError, UnicodeDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    policy = VerifyPolicy(percent=args.percent, mode=args.mode)
    if args.explain:
        print("\n".join(explain(completion, args.gold, policy, args.truncated)))
    else:
        verdict = check(completion, args.gold, policy=policy, truncated=args.truncated)
        print("correct" if verdict.correct else "incorrect")
    return 0


if __name__ == "__main__":
    sys.exit(main())
