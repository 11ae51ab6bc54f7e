"""EvalAccumulator when only some prompts were decoded greedily (a survivor of tools/mutation_check.py)."""

from __future__ import annotations

import pytest
import torch

from lightning_grpo.metrics import EvalAccumulator


def test_greedy_accuracy_counts_only_prompts_with_a_greedy_verdict() -> None:
    metric = EvalAccumulator(ks=(1,))
    # prompts 0, 1 decoded greedily (one right), prompt 2 only sampled
    metric.update([0, 1], correct=torch.tensor([[True], [False]]), greedy_correct=torch.tensor([True, False]),
                  greedy_lengths=torch.tensor([4, 8]), greedy_truncated=torch.tensor([False, True]))
    metric.update([2], correct=torch.tensor([[True]]))
    result = metric.compute()
    assert float(result["num_prompts"]) == 3
    assert float(result["accuracy"]) == 0.5  # 1 of the 2 greedy prompts, not 1 of 3
    assert float(result["greedy_length_mean"]) == 6.0
    assert float(result["greedy_truncated_frac"]) == 0.5
    assert float(result["pass@1"]) == pytest.approx(2 / 3)
