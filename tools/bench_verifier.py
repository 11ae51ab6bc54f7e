"""Benchmark the math verifier (and Math-Verify, when installed) on tests/data/verifier_corpus.jsonl.

Both verifiers run through the same :class:`~lightning_grpo.rewards.math.VerifierPool`: each case in
a killable worker process with a hard time limit, so a hang shows up as a timeout, not a stuck run.
Printed per verifier: accuracy, false positives, false negatives, timeouts, errors, mean and p99
latency (time spent inside the worker), and accuracy per category. Then the time MathReward takes
to score a batch of 1,024 typical completions (GSM8K and MATH-500 cases) on 2 worker processes.

Math-Verify is an optional benchmark dependency (``pip install math-verify``); the package does not
depend on it. Run from the repository root: ``python tools/bench_verifier.py [--limit-s 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from build_verifier_corpus import load_corpus  # noqa: E402

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


def _report(name: str, cases: list[dict[str, Any]], outcomes: list[Outcome]) -> dict[str, float]:
    fp = fn = timeouts = errors = correct = 0
    per_category: dict[str, list[int]] = {}
    missed: list[str] = []
    for case, outcome in zip(cases, outcomes):
        predicted = bool(outcome.status == "ok" and outcome.value[0])
        timeouts += outcome.status == "timeout"
        errors += outcome.status == "error" or (outcome.status == "ok" and outcome.value[1] is not None)
        right = predicted == case["equivalent"]
        correct += right
        fp += predicted and not case["equivalent"]
        fn += case["equivalent"] and not predicted
        stats = per_category.setdefault(case["category"], [0, 0])
        stats[0] += right
        stats[1] += 1
        if not right:
            missed.append(f"{case['id']}({'FP' if predicted else 'FN'})")
    latencies = sorted(o.seconds for o in outcomes)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    n = len(cases)
    print(f"\n== {name}: {n} cases")
    print(f"accuracy {correct / n:.4f}   false positives {fp} ({100 * fp / n:.2f}%)   false negatives {fn}")
    print(f"timeouts {timeouts}   errors {errors}   latency mean {1000 * statistics.mean(latencies):.2f} ms   "
          f"p99 {1000 * p99:.2f} ms   max {1000 * latencies[-1]:.1f} ms")
    print("by category: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in per_category.items()))
    print(f"wrong ({len(missed)}): {' '.join(missed[:40])}{' …' if len(missed) > 40 else ''}")
    return {"fp": fp, "accuracy": correct / n, "timeouts": timeouts, "p99": p99, "n": n}


def _run(function: Any, cases: list[dict[str, Any]], limit_s: float, workers: int) -> list[Outcome]:
    pool = VerifierPool(function, num_workers=workers, timeout_s=limit_s)
    try:
        pool.map([("\\boxed{1}", "1", VerifyPolicy(), False)])  # start the workers outside the timing
        tasks = [(c["completion"], c["gold"], VerifyPolicy(), bool(c.get("truncated", False))) for c in cases]
        return pool.map(tasks)
    finally:
        pool.close()


def _batch_timing(cases: list[dict[str, Any]]) -> float:
    typical = [c for c in cases if c["category"] in ("gsm8k", "math500")][:1024]
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
    reward = MathReward(num_workers=2)
    try:
        start = time.perf_counter()
        reward.pool.map([("\\boxed{1}", "1", reward.policy, False)])
        startup = time.perf_counter() - start
        start = time.perf_counter()
        values = reward.score(batch)
        elapsed = time.perf_counter() - start
    finally:
        reward.close()
    print(f"\n== MathReward batch: {n} completions on 2 workers in {elapsed:.3f} s "
          f"(pool start {startup:.2f} s, not included); {sum(values):.0f} scored correct; {reward.counters()}")
    return elapsed


def _targets(ours: dict[str, float], theirs: dict[str, float] | None, batch_s: float) -> None:
    """The issue's targets, each with its measured value."""
    checks = [
        (f"accuracy {ours['accuracy']:.4f} >= 0.985", ours["accuracy"] >= 0.985),
        (f"false positives {ours['fp']:.0f} <= 0.3% of {ours['n']:.0f}", ours["fp"] <= 0.003 * ours["n"]),
        (f"timeouts {ours['timeouts']:.0f} == 0", ours["timeouts"] == 0),
        (f"p99 latency {1000 * ours['p99']:.1f} ms <= 200 ms", ours["p99"] <= 0.2),
        (f"1,024-completion batch {batch_s:.3f} s < 2 s", batch_s < 2.0),
    ]
    if theirs is not None:
        checks.append((f"false positives {ours['fp']:.0f} < Math-Verify's {theirs['fp']:.0f}", ours["fp"] < theirs["fp"]))
    print("\n== targets")
    for text, met in checks:
        print(f"{'met   ' if met else 'MISSED'} {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-s", type=float, default=5.0, help="hard time limit per case")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cases = load_corpus()
    print(f"corpus: {len(cases)} cases, per-case limit {args.limit_s} s, {args.workers} workers")
    ours = _report("lightning_grpo verifier", cases, _run(check_task, cases, args.limit_s, args.workers))
    theirs = None
    try:
        import math_verify  # noqa: F401
    except ImportError:
        print("\nMath-Verify is not installed (pip install math-verify): skipped")
    else:
        theirs = _report("Math-Verify", cases, _run(math_verify_task, cases, args.limit_s, args.workers))
        print(f"\nfalse positives: ours {ours['fp']:.0f} vs Math-Verify {theirs['fp']:.0f}")
    _targets(ours, theirs, _batch_timing(cases))


if __name__ == "__main__":
    main()
