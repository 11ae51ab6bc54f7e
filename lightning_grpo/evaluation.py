"""Held-out evaluation of one batch of prompts: greedy and k sampled completions, scored.

The data module turns each validation batch (P prompts of this rank) into an :class:`EvalBatch`
in ``on_after_batch_transfer``; ``GRPOModule.validation_step`` feeds it to
:class:`lightning_grpo.metrics.EvalAccumulator`, which counts each prompt once over all ranks and
reports greedy accuracy, unbiased pass@k, maj@k, mean length and truncated fraction.

Correctness comes from the run's correctness reward (the reward function with ``is_correctness``);
its ``extract`` gives the answers that vote in maj@k. The sampling seed of a batch depends on the
run's seed and the batch's first prompt id, so a validation is reproducible for a given layout
(greedy results do not depend on the layout at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from lightning_grpo.metrics import stable_prompt_id
from lightning_grpo.rewards.base import RewardBatch, RewardFunction
from lightning_grpo.rollout import GroupSampler


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


def _generate_and_score(
    sampler: GroupSampler,
    policy: torch.nn.Module,
    batch: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    eos_ids: list[int],
    judge: RewardFunction,
    num_samples: int,
    greedy: bool,
) -> tuple[Tensor, Tensor, Tensor, list[list[str | None]], list[str]]:
    """(correct [P, n], lengths [P, n], truncated [P, n], answers [P][n], texts [P·n])."""
    prompt_ids, prompt_mask = batch["input_ids"], batch["attention_mask"]  # [P, Tp]
    sequences, completion_mask, truncated = sampler.sample(
        policy, prompt_ids, prompt_mask, eos_ids, tokenizer.pad_token_id, num_samples=num_samples, greedy=greedy
    )  # [P·n, Tp + Tc], [P·n, Tc], [P·n]
    completion_ids = sequences[:, prompt_ids.shape[1] :]  # [P·n, Tc]
    lengths = completion_mask.sum(dim=1)  # [P·n]
    texts = tokenizer.batch_decode(
        [row[: int(k)] for row, k in zip(completion_ids.tolist(), lengths.tolist())], skip_special_tokens=True
    )
    p, n = prompt_ids.shape[0], num_samples
    flags = [bool(t) for t in truncated.tolist()]
    scores = judge.score(
        RewardBatch(
            prompts=[q for q in batch["prompt"] for _ in range(n)],
            completions=texts,
            golds=[a for a in batch["answer"] for _ in range(n)],
            completion_ids=[f"{pid}/{k}" for pid in batch["id"] for k in range(n)],
            group_ids=[i // n for i in range(p * n)],
            lengths=[int(x) for x in lengths.tolist()],
            truncated=flags,
            max_new_tokens=sampler.max_new_tokens,
            metadata=[{} for _ in range(p * n)],
        )
    )
    correct = torch.tensor([s == judge.correct_value for s in scores]).view(p, n)
    answers = [judge.extract(t, truncated=f) for t, f in zip(texts, flags)]
    grouped = [answers[i * n : (i + 1) * n] for i in range(p)]
    return correct, lengths.cpu().view(p, n), truncated.cpu().view(p, n), grouped, texts


def evaluate_batch(
    sampler: GroupSampler,
    policy: torch.nn.Module,
    batch: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    eos_ids: list[int],
    judge: RewardFunction,
    num_samples: int,
    greedy: bool,
    seed: int,
) -> EvalBatch:
    """Greedy and ``num_samples`` sampled completions per prompt, judged by ``judge``."""
    device = batch["input_ids"].device
    ids = [str(i) for i in batch["id"]]
    p = len(ids)
    result = EvalBatch(
        prompt_ids=ids,
        correct=torch.zeros(p, 0, dtype=torch.bool),
        lengths=torch.zeros(p, 0, dtype=torch.long),
        truncated=torch.zeros(p, 0, dtype=torch.bool),
        answers=[[] for _ in ids],
    )
    if greedy:
        correct, lengths, truncated, answers, texts = _generate_and_score(
            sampler, policy, batch, tokenizer, eos_ids, judge, 1, greedy=True
        )
        result.greedy_correct, result.greedy_lengths, result.greedy_truncated = correct[:, 0], lengths[:, 0], truncated[:, 0]
        result.examples = [
            {"prompt": q, "completion": t, "answer": a[0], "gold": g, "correct": bool(c)}
            for q, t, a, g, c in zip(batch["prompt"], texts, answers, batch["answer"], correct[:, 0].tolist())
        ]
    if num_samples > 0:
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed((seed * 1_000_003 + stable_prompt_id(ids[0])) % (2**63 - 1))
            result.correct, result.lengths, result.truncated, result.answers, _ = _generate_and_score(
                sampler, policy, batch, tokenizer, eos_ids, judge, num_samples, greedy=False
            )
    return result
