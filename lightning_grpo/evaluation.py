"""Held-out evaluation of one batch of prompts: greedy and k sampled completions, scored.

The data module samples each validation batch (P prompts of this rank) greedily and n times with
the run's sampler, builds a judged :class:`~lightning_grpo.rollout.Rollout` of each with the same
``build_rollout`` as training, and turns them into an :class:`EvalBatch` here;
``GRPOModule.validation_step`` feeds it to
:class:`lightning_grpo.metrics.EvalAccumulator`, which counts each prompt once over all ranks and
reports greedy accuracy, unbiased pass@k, maj@k, mean length and truncated fraction.

Correctness comes from the run's correctness reward (the reward function with ``is_correctness``);
its ``extract`` gives the answers that vote in maj@k.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lightning_grpo.rollout import Rollout


@dataclass
class EvalBatch:
    """Verdicts for P held-out prompts: greedy (if asked) and n samples each (n may be 0)."""

    prompt_ids: list[str]  # [P]
    correct: Tensor  # [P, n] bool
    lengths: Tensor  # [P, n] completion tokens
    truncated: Tensor  # [P, n] bool
    answers: list[list[str | None]]  # [P][n] extracted answers, for maj@k
    greedy_correct: Tensor | None = None  # [P] bool
    greedy_lengths: Tensor | None = None  # [P]
    greedy_truncated: Tensor | None = None  # [P] bool
    examples: list[dict[str, Any]] = field(default_factory=list)  # prompt, completion, answer, gold, correct


def eval_batch(greedy: Rollout | None, sampled: Rollout | None) -> EvalBatch:
    """Verdicts of P held-out prompts from their greedy rollout (n = 1) and sampled rollout (n samples).

    Both rollouts come from :func:`~lightning_grpo.rollout.build_rollout` on the same prompt batch
    and are judged by the correctness reward (their ``correct`` and ``answers``).
    """
    first = greedy if greedy is not None else sampled
    if first is None:
        raise ValueError("eval_batch needs a greedy or a sampled rollout")
    p = first.num_groups
    result = EvalBatch(
        prompt_ids=list(first.prompt_ids),
        correct=torch.zeros(p, 0, dtype=torch.bool),
        lengths=torch.zeros(p, 0, dtype=torch.long),
        truncated=torch.zeros(p, 0, dtype=torch.bool),
        answers=[[] for _ in range(p)],
    )
    if greedy is not None:
        correct, lengths, truncated, answers = _verdicts(greedy)
        result.greedy_correct, result.greedy_lengths, result.greedy_truncated = correct[:, 0], lengths[:, 0], truncated[:, 0]
        result.examples = [
            {"prompt": q, "completion": t, "answer": a[0], "gold": g, "correct": bool(c)}
            for q, t, a, g, c in zip(greedy.prompts, greedy.completions, answers, greedy.golds, correct[:, 0].tolist())
        ]
    if sampled is not None:
        result.correct, result.lengths, result.truncated, result.answers = _verdicts(sampled)
    return result


def _verdicts(rollout: Rollout) -> tuple[Tensor, Tensor, Tensor, list[list[str | None]]]:
    """(correct [P, n], lengths [P, n], truncated [P, n], answers [P][n]) of a judged rollout."""
    if rollout.correct is None:
        raise ValueError("a held-out rollout must be judged by a correctness reward")
    p, n = rollout.num_groups, rollout.group_size
    answers = list(rollout.answers) if rollout.answers else [None] * (p * n)
    return (
        rollout.correct.cpu().view(p, n),
        rollout.lengths.cpu().view(p, n),
        rollout.truncated.cpu().view(p, n),
        [answers[i * n : (i + 1) * n] for i in range(p)],
    )
