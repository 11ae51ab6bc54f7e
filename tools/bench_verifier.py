"""Benchmark the math verifier (and Math-Verify, when installed) on the labelled corpora in tests/data.

Corpora (``--corpus``, repeatable; default all three): ``old`` is tests/data/verifier_corpus.jsonl (the
corpus the verifier was built on), ``tune`` and ``holdout`` are the two halves of
tests/data/verifier_fresh.jsonl (real outputs from other projects' logs, other graders' pairs, other
languages, tool-integrated outputs and hand-made hard variants; split at random before any verifier
ran on them). ``holdout`` is for a final score only: its wrong case ids are not printed unless
``--show-holdout-ids``.

Both verifiers run through the same :class:`~lightning_grpo.rewards.math.VerifierPool`: each case in
a killable worker process with a hard time limit, so a hang shows up as a timeout, not a stuck run.
Printed per verifier: accuracy, false positives, false negatives, timeouts, errors, mean and p99
latency (time spent inside the worker); then two markdown tables, per category and per source
(where the labelled pair comes from), with accuracy, false positives and false negatives of both
verifiers; then the time MathReward takes to score 1,024 typical completions (GSM8K, MATH-500 and
model-style cases) on ``--workers`` processes; then issue #12's targets, each met or missed.

Math-Verify is an optional benchmark dependency (``pip install math-verify``); the package does not
depend on it. Run from the repository root: ``python tools/bench_verifier.py [--limit-s 5] [--mode strict]``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from build_verifier_corpus import FRESH, load_corpus  # noqa: E402

from lightning_grpo.rewards.base import RewardBatch  # noqa: E402
from lightning_grpo.rewards.math import MathReward, Outcome, VerifierPool, check_task  # noqa: E402
from lightning_grpo.rewards.verifier import VerifyPolicy  # noqa: E402


def math_verify_task(completion: str, gold: str, policy: VerifyPolicy, truncated: bool) -> tuple[bool, str | None]:
    """Math-Verify's documented usage: ``verify(parse(gold), parse(answer))`` (policy, truncation unused)."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every parse timeout in full
    gold_text = gold if "\\boxed" in gold or "$" in gold else f"${gold}$"
    return bool(verify(parse(gold_text), parse(completion))), None


def _source_group(source: str) -> str:
    """Cases are grouped by where they come from: the repository (and tests/issues) of a source."""
    head = re.split(r",| \(", source)[0].strip()
    if head.startswith("https://github.com/"):
        parts = head[len("https://github.com/") :].split("/")
        return f"{parts[0]}/{parts[1]} {parts[2] if len(parts) > 2 else ''}".strip()
    if head.startswith("huggingface/Math-Verify tests/"):
        return "huggingface/Math-Verify tests"
    return head


def _tally(cases: list[dict[str, Any]], outcomes: list[Outcome], key: Any) -> dict[str, list[int]]:
    """Per group: [cases, right, false positives, false negatives, negatives, p99 latency in ms]."""
    table: dict[str, list[Any]] = {}
    seconds: dict[str, list[float]] = {}
    for case, outcome in zip(cases, outcomes):
        predicted = bool(outcome.status == "ok" and outcome.value[0])
        seconds.setdefault(key(case), []).append(outcome.seconds)
        row = table.setdefault(key(case), [0, 0, 0, 0, 0, 0.0])
        row[0] += 1
        row[1] += predicted == case["equivalent"]
        row[2] += predicted and not case["equivalent"]
        row[3] += case["equivalent"] and not predicted
        row[4] += not case["equivalent"]
    for group, times in seconds.items():
        times.sort()
        table[group][5] = 1000 * times[min(len(times) - 1, int(0.99 * len(times)))]
    return table


def _report(name: str, cases: list[dict[str, Any]], outcomes: list[Outcome], show_ids: bool = True) -> dict[str, Any]:
    fp = fn = timeouts = errors = correct = 0
    missed: list[str] = []
    for case, outcome in zip(cases, outcomes):
        predicted = bool(outcome.status == "ok" and outcome.value[0])
        timeouts += outcome.status == "timeout"
        errors += outcome.status == "error" or (outcome.status == "ok" and outcome.value[1] is not None)
        right = predicted == case["equivalent"]
        correct += right
        fp += predicted and not case["equivalent"]
        fn += case["equivalent"] and not predicted
        if not right:
            missed.append(f"{case['id']}({'FP' if predicted else 'FN'})")
    latencies = sorted(o.seconds for o in outcomes)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    n = len(cases)
    print(f"\n== {name}: {n} cases")
    print(f"accuracy {correct / n:.4f}   false positives {fp} ({100 * fp / n:.2f}%)   false negatives {fn}")
    print(f"timeouts {timeouts}   errors {errors}   latency mean {1000 * statistics.mean(latencies):.2f} ms   "
          f"p99 {1000 * p99:.2f} ms   max {1000 * latencies[-1]:.1f} ms")
    if show_ids:
        print(f"wrong ({len(missed)}): {' '.join(missed[:60])}{' …' if len(missed) > 60 else ''}")
    return {
        "fp": fp, "accuracy": correct / n, "timeouts": timeouts, "p99": p99, "n": n,
        "category": _tally(cases, outcomes, lambda c: c["category"]),
        "source": _tally(cases, outcomes, lambda c: _source_group(c["source"])),
    }


def _table(title: str, ours: dict[str, list[int]], theirs: dict[str, list[int]] | None) -> None:
    """A markdown table: per group, cases, then accuracy, false positives (% of all its cases) and
    false negatives for each verifier."""
    header = "| " + title + " | cases | ours: accuracy | FP | FN | p99 ms |"
    header += " Math-Verify: accuracy | FP | FN | p99 ms |" if theirs is not None else ""
    print("\n" + header)
    print("|" + "---|" * (header.count("|") - 1))
    for group in sorted(ours, key=lambda g: (-ours[g][0], g)):
        n, right, fp, fn, _, p99 = ours[group]
        line = f"| {group} | {n} | {right / n:.4f} | {fp} ({100 * fp / n:.1f}%) | {fn} | {p99:.1f} |"
        if theirs is not None:
            t_n, t_right, t_fp, t_fn, _, t_p99 = theirs[group]
            line += f" {t_right / t_n:.4f} | {t_fp} ({100 * t_fp / t_n:.1f}%) | {t_fn} | {t_p99:.1f} |"
        print(line)


def _run(function: Any, cases: list[dict[str, Any]], limit_s: float, workers: int, policy: VerifyPolicy) -> list[Outcome]:
    pool = VerifierPool(function, num_workers=workers, timeout_s=limit_s)
    try:
        pool.map([("\\boxed{1}", "1", policy, False)])  # start the workers outside the timing
        tasks = [(c["completion"], c["gold"], policy, bool(c.get("truncated", False))) for c in cases]
        return pool.map(tasks)
    finally:
        pool.close()


def _batch_timing(cases: list[dict[str, Any]], workers: int) -> float:
    """Seconds for MathReward to score 1,024 typical completions (GSM8K, MATH-500 and model-style
    cases, spread evenly) with ``workers`` processes, the pool started beforehand by ``setup()``."""
    pool = [c for c in cases if c["category"] in ("gsm8k", "math500", "model_style")]
    typical = [pool[(i * len(pool)) // 1024] for i in range(min(1024, len(pool)))]
    n = len(typical)
    batch = RewardBatch(
        prompts=[""] * n,
        completions=[c["completion"] for c in typical],
        golds=[c["gold"] for c in typical],
        completion_ids=[c["id"] for c in typical],
        group_ids=[i // 8 for i in range(n)],
        lengths=[len(c["completion"]) // 4 for c in typical],
        truncated=[bool(c.get("truncated", False)) for c in typical],
    )
    reward = MathReward(num_workers=workers)
    try:
        start = time.perf_counter()
        reward.setup()
        startup = time.perf_counter() - start
        pids, load = reward.pool.pids, os.getloadavg()[0]
        cpu_before, parent_before = _cpu_seconds(pids), time.process_time()
        start = time.perf_counter()
        values = reward.score(batch)
        elapsed = time.perf_counter() - start
        worker_cpu = _cpu_seconds(pids) - cpu_before
        parent_cpu = time.process_time() - parent_before
    finally:
        reward.close()
    right = sum((v == reward.correct_value) == c["equivalent"] for v, c in zip(values, typical))
    print(f"\n== MathReward batch: {n} completions on {workers} workers in {elapsed:.3f} s wall at load {load:.1f} "
          f"(pool start in setup() {startup:.2f} s, not included); CPU: workers {worker_cpu:.2f} s, parent {parent_cpu:.2f} s; "
          f"{right}/{n} scored as labelled; {reward.counters()}")
    return elapsed


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes ``pids`` (Linux ``/proc``; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _targets(ours: dict[str, Any], theirs: dict[str, Any] | None, batch_s: float) -> None:
    """The issue's targets, each with its measured value."""
    checks = [
        (f"accuracy {ours['accuracy']:.4f} >= 0.99", ours["accuracy"] >= 0.99),
        (f"false positives {ours['fp']:.0f} <= 0.2% of {ours['n']:.0f}", ours["fp"] <= 0.002 * ours["n"]),
        (f"timeouts {ours['timeouts']:.0f} == 0", ours["timeouts"] == 0),
        (f"p99 latency {1000 * ours['p99']:.1f} ms <= 100 ms", ours["p99"] <= 0.1),
        (f"1,024-completion batch {batch_s:.3f} s < 1 s", batch_s < 1.0),
    ]
    for category, (n, right, fp, _, _, _) in sorted(ours["category"].items()):
        checks.append((f"{category}: accuracy {right / n:.4f} >= 0.99", right / n >= 0.99))
        checks.append((f"{category}: false positives {fp} <= 0.2% of {n}", fp <= 0.002 * n))
        if theirs is not None:
            t_n, t_right = theirs["category"][category][:2]
            above = right / n > t_right / t_n or right == n
            checks.append((f"{category}: accuracy {right / n:.4f} above Math-Verify's {t_right / t_n:.4f} "
                           "(or both perfect)", above))
    print("\n== targets")
    for text, met in checks:
        print(f"{'met   ' if met else 'MISSED'} {text}")


def _corpus(name: str) -> list[dict[str, Any]]:
    if name == "old":
        return load_corpus()
    return [c for c in load_corpus(FRESH) if c["split"] == name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-s", type=float, default=5.0, help="hard time limit per case")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=("lenient", "strict"), default="lenient", help="our extraction mode")
    parser.add_argument("--corpus", action="append", choices=("old", "tune", "holdout"),
                        help="which corpora to score (repeatable; default: all three)")
    parser.add_argument("--show-holdout-ids", action="store_true", help="print the ids of holdout cases scored wrong")
    parser.add_argument("--no-math-verify", action="store_true", help="score our verifier only")
    parser.add_argument("--no-batch-timing", action="store_true", help="skip the 1,024-completion batch timing")
    args = parser.parse_args()
    try:
        import math_verify  # noqa: F401
    except ImportError:
        have_math_verify = False
        print("Math-Verify is not installed (pip install math-verify): skipped")
    else:
        have_math_verify = not args.no_math_verify
    for name in args.corpus or ["old", "tune", "holdout"]:
        cases = _corpus(name)
        show = name != "holdout" or args.show_holdout_ids
        print(f"\n######## corpus {name}: {len(cases)} cases, per-case limit {args.limit_s} s, {args.workers} workers, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        ours = _report(f"lightning_grpo verifier ({args.mode}) on {name}", cases,
                       _run(check_task, cases, args.limit_s, args.workers, VerifyPolicy(mode=args.mode)), show)
        theirs = None
        if have_math_verify:
            theirs = _report(f"Math-Verify on {name}", cases,
                             _run(math_verify_task, cases, args.limit_s, args.workers, VerifyPolicy()), show)
        _table(f"{name}: category", ours["category"], theirs["category"] if theirs else None)
        if name == "old":
            _table("old: source", ours["source"], theirs["source"] if theirs else None)
            if not args.no_batch_timing:
                _targets(ours, theirs, _batch_timing(cases, args.workers))


if __name__ == "__main__":
    main()
