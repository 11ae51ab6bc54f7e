"""pass@k, maj@k and the evaluation accumulator, against values worked out by hand.

The distributed test runs this file as a 2-process gloo job (``python tests/test_metrics.py``
spawns the ranks) and checks that a prompt evaluated on both ranks is counted once.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from lightning_grpo.metrics import EvalAccumulator, majority_vote, pass_at_k, stable_prompt_id

ROOT = Path(__file__).resolve().parents[1]


# ---- pass@k -------------------------------------------------------------------------------------
def test_pass_at_k_hand_values() -> None:
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the fraction correct
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    # fewer wrong samples than k: every k-subset holds a correct one
    assert pass_at_k(4, 3, 2) == 1.0
    assert pass_at_k(4, 4, 4) == 1.0
    assert pass_at_k(10, 0, 5) == 0.0
    # n=4, c=1, k=4: the only 4-subset holds the correct sample
    assert pass_at_k(4, 1, 4) == 1.0


def test_pass_at_k_matches_exact_binomials_for_large_n() -> None:
    for n, c, k in [(200, 37, 50), (1000, 1, 1), (1000, 3, 100), (64, 10, 8)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12, abs=1e-15)


def test_pass_at_k_rejects_invalid_arguments() -> None:
    for n, c, k in [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


# ---- maj@k --------------------------------------------------------------------------------------
def test_majority_vote_most_common_answer_ignoring_none() -> None:
    assert majority_vote(["3", "4", "3", None], [True, False, True, False]) is True
    assert majority_vote([None, None, "5"], [False, False, True]) is True  # None does not vote
    assert majority_vote(["5", "5", "6"], [False, False, True]) is False


def test_majority_vote_tie_goes_to_first_seen_and_no_answer_is_wrong() -> None:
    assert majority_vote(["4", "3"], [False, True]) is False  # tie: "4" came first
    assert majority_vote(["3", "4"], [True, False]) is True
    assert majority_vote(["2", "9", "9", "2"], [True, False, False, True]) is True  # tie 2-2: "2" first
    assert majority_vote([None, None], [False, False]) is False
    assert majority_vote([], []) is False
    with pytest.raises(ValueError):
        majority_vote(["1"], [True, False])


def test_stable_prompt_id_is_deterministic_and_non_negative() -> None:
    assert stable_prompt_id("gsm8k-test-17") == stable_prompt_id("gsm8k-test-17")
    assert stable_prompt_id("gsm8k-test-17") != stable_prompt_id("gsm8k-test-18")
    assert 0 <= stable_prompt_id("x") < 2**63
    assert stable_prompt_id(42) == 42
    # A fixed function of the string (blake2b), not of the process's hash salt.
    assert stable_prompt_id("gsm8k-test-17") == 3903839083889687909


# ---- the accumulator ----------------------------------------------------------------------------
# Three prompts, n = 4 samples each.
#   p0: correct 1 0 0 1 (c=2), answers 7 8 9 7   -> maj@1 "7" ok, maj@2 tie 7/8 -> "7" ok, maj@4 "7" ok
#   p1: correct 0 0 0 0 (c=0), answers 1 1 2 -   -> maj all wrong
#   p2: correct 0 1 1 1 (c=3), answers 5 6 6 6   -> maj@1 "5" no, maj@2 tie 5/6 -> "5" no, maj@4 "6" ok
CORRECT = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
ANSWERS = [["7", "8", "9", "7"], ["1", "1", "2", None], ["5", "6", "6", "6"]]
LENGTHS = torch.tensor([[2, 3, 4, 5], [8, 8, 8, 8], [1, 1, 1, 1]])  # sum 14 + 32 + 4 = 50 over 12 samples
TRUNCATED = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)  # 4 of 12
GREEDY = torch.tensor([True, False, True])
GREEDY_LENGTHS = torch.tensor([3, 8, 1])
GREEDY_TRUNCATED = torch.tensor([False, True, False])
EXPECTED = {
    "num_prompts": 3.0,
    "pass@1": (2 / 4 + 0 + 3 / 4) / 3,
    "pass@2": ((1 - 1 / 6) + 0 + 1) / 3,  # p0: 1 - C(2,2)/C(4,2); p2: only 1 wrong < k
    "pass@4": (1 + 0 + 1) / 3,
    "maj@1": 1 / 3,
    "maj@2": 1 / 3,
    "maj@4": 2 / 3,
    "length_mean": 50 / 12,
    "truncated_frac": 4 / 12,
    "accuracy": 2 / 3,
    "greedy_length_mean": 12 / 3,
    "greedy_truncated_frac": 1 / 3,
}


def _update(metric: EvalAccumulator, rows: list[int], ids: list[int | str] | None = None, **override) -> None:  # type: ignore[no-untyped-def]
    metric.update(
        ids if ids is not None else rows,
        correct=override.get("correct", CORRECT[rows]),
        lengths=LENGTHS[rows],
        truncated=TRUNCATED[rows],
        answers=[ANSWERS[r] for r in rows],
        greedy_correct=GREEDY[rows],
        greedy_lengths=GREEDY_LENGTHS[rows],
        greedy_truncated=GREEDY_TRUNCATED[rows],
    )


def _assert_expected(result: dict[str, torch.Tensor], expected: dict[str, float] = EXPECTED) -> None:
    assert set(result) == set(expected), sorted(result)
    for key, value in expected.items():
        assert float(result[key]) == pytest.approx(value, abs=1e-6), key


def test_accumulator_hand_values_over_two_batches() -> None:
    metric = EvalAccumulator(ks=(1, 2, 4))
    _update(metric, [0, 1])
    _update(metric, [2])
    _assert_expected(metric.compute())


def test_accumulator_counts_a_repeated_prompt_once_first_record_wins() -> None:
    metric = EvalAccumulator(ks=(1, 2, 4))
    _update(metric, [0, 1, 2])
    # The sampler's padding repeats prompt 0 with other samples (all correct): must not count.
    _update(metric, [0], correct=torch.ones(1, 4, dtype=torch.bool))
    _assert_expected(metric.compute())


def test_accumulator_string_ids_and_k_beyond_n_is_omitted() -> None:
    metric = EvalAccumulator(ks=(1, 8))
    _update(metric, [0, 1, 2], ids=["a", "b", "c"])
    _update(metric, [1], ids=["b"])
    result = metric.compute()
    assert "pass@8" not in result and "maj@8" not in result  # no prompt has 8 samples
    assert float(result["num_prompts"]) == 3
    assert float(result["pass@1"]) == pytest.approx(EXPECTED["pass@1"])


def test_accumulator_greedy_only_and_samples_only() -> None:
    greedy_only = EvalAccumulator(ks=(1,))
    greedy_only.update([5, 6], greedy_correct=torch.tensor([True, False]), greedy_lengths=torch.tensor([4, 6]))
    result = greedy_only.compute()
    assert set(result) == {"num_prompts", "accuracy", "greedy_length_mean", "greedy_truncated_frac"}
    assert float(result["accuracy"]) == 0.5 and float(result["greedy_length_mean"]) == 5.0
    samples_only = EvalAccumulator(ks=(1, 2))
    samples_only.update([1], correct=torch.tensor([[True, False]]), lengths=torch.tensor([[3, 5]]))
    result = samples_only.compute()
    assert "accuracy" not in result and "maj@1" not in result  # no greedy verdicts, no answers
    assert float(result["pass@2"]) == 1.0 and float(result["length_mean"]) == 4.0


def test_accumulator_empty_and_reset() -> None:
    metric = EvalAccumulator()
    assert float(metric.compute()["num_prompts"]) == 0
    _update(metric, [0])
    metric.reset()
    assert float(metric.compute()["num_prompts"]) == 0


# ---- two ranks ----------------------------------------------------------------------------------
def _rank_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    metric = EvalAccumulator(ks=(1, 2, 4))
    if rank == 0:
        _update(metric, [0, 1])
    else:
        # Prompt 1 again (as DistributedSampler padding would), with different samples; then prompt 2.
        _update(metric, [1], correct=torch.ones(1, 4, dtype=torch.bool))
        _update(metric, [2])
    both = {k: float(v) for k, v in metric.compute().items()}
    # A rank that saw no prompt at all still joins the gather.
    lonely = EvalAccumulator(ks=(1, 2, 4))
    if rank == 0:
        _update(lonely, [0, 1, 2])
    only_rank0 = {k: float(v) for k, v in lonely.compute().items()}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"both": both, "only_rank0": only_rank0}))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_ranks_count_a_shared_prompt_once(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for out in outputs:
        _assert_expected(out["both"])
        _assert_expected(out["only_rank0"])


if __name__ == "__main__":
    import torch.multiprocessing as mp

    out_dir = sys.argv[1]
    mp.start_processes(_rank_main, args=(2, os.path.join(out_dir, "init"), out_dir), nprocs=2, start_method="fork")
