"""The ``Rollout`` (one scored batch of groups) and the one function that builds it from samples.

``build_rollout`` is the only place where sampled ids become texts, texts become a ``RewardBatch``,
and reward scores become tensors; training (``RolloutEngine.sample_round``) and validation
(``RolloutEngine.evaluate``) both call it. The source row's extra fields (everything
but ``prompt``, ``answer`` and ``id``) reach the reward functions as ``RewardBatch.metadata``.

Completion i belongs to prompt (group) i // G; ``group_ids`` says so explicitly, and dynamic
sampling's ``gather_groups`` keeps it true after picking groups from several rounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from lightning_grpo.rewards.base import RewardBatch, RewardComposer
from lightning_grpo.sampling.base import Samples

# Fields of a prompt batch that are not metadata for reward functions.
PROMPT_FIELDS = ("input_ids", "attention_mask", "prompt", "answer", "id", "metadata")


@dataclass
class Rollout:
    """P prompts × G completions of one rank, scored. N = P·G rows, Tp prompt and Tc completion positions."""

    input_ids: Tensor  # [N, Tp + Tc] left-padded prompt followed by the completion
    attention_mask: Tensor  # [N, Tp + Tc] prompt mask, then the transcript (model and environment tokens)
    completion_mask: Tensor  # [N, Tc] loss mask: the model's tokens (single-turn: up to and including EOS)
    truncated: Tensor  # [N] bool: no EOS within max_new_tokens
    rewards: Tensor  # [N] weighted sum of the reward components
    reward_components: dict[str, Tensor]  # name -> [N]
    group_ids: Tensor  # [N] index of the prompt (group) within this rank's batch
    group_size: int
    prompt_length: int  # Tp
    temperature: float
    max_new_tokens: int
    correct: Tensor | None = None  # [N] bool, when a correctness reward is configured
    valid: Tensor | None = None  # [N] bool: False rows are kept for shape only and carry no loss
    undecodable: Tensor | None = None  # [N] bool: a loss token the tokenizer cannot decode
    prompts: list[str] = field(default_factory=list)  # [P]
    completions: list[str] = field(default_factory=list)  # [N]
    answers: list[str | None] = field(default_factory=list)  # [N] answers the correctness reward read
    golds: list[str] = field(default_factory=list)  # [P]
    prompt_ids: list[str] = field(default_factory=list)  # [P] ids of the source rows
    stats: dict[str, float] = field(default_factory=dict)  # logged as-is: "time/generation_s", ...

    @property
    def completion_ids(self) -> Tensor:
        return self.input_ids[:, self.prompt_length :]  # [N, Tc]

    @property
    def num_groups(self) -> int:
        return self.input_ids.shape[0] // self.group_size

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(dim=1)  # [N]


def gather_groups(rollouts: list[Rollout], picks: list[tuple[int, int]], pad_id: int) -> Rollout:
    """A new rollout made of the groups ``picks`` = [(rollout index, group index)], re-padded.

    Prompts stay left-padded and completions right-padded to the widest of the picked rollouts.
    ``stats`` of all the rollouts are summed (times and counters), shares (``*_frac``) averaged.
    """
    g = rollouts[0].group_size
    tp = max(rollouts[k].prompt_length for k, _ in picks)
    tc = max(rollouts[k].completion_ids.shape[1] for k, _ in picks)
    ids, attn, cmask, rows_of = [], [], [], []
    for k, group in picks:
        r = rollouts[k]
        rows = slice(group * g, (group + 1) * g)
        left, right = tp - r.prompt_length, tc - r.completion_ids.shape[1]
        ids.append(torch.nn.functional.pad(r.input_ids[rows], (left, right), value=pad_id))
        attn.append(torch.nn.functional.pad(r.attention_mask[rows], (left, right), value=0))
        cmask.append(torch.nn.functional.pad(r.completion_mask[rows], (0, right), value=0))
        rows_of.append((r, rows))

    def cat(name: str) -> Tensor | None:
        parts = [getattr(r, name) for r, _ in rows_of]
        return None if parts[0] is None else torch.cat([p[rows] for p, (_, rows) in zip(parts, rows_of)])

    first = rollouts[0]
    stats: dict[str, float] = {}
    for r in rollouts:
        for key, value in r.stats.items():
            stats[key] = stats.get(key, 0.0) + value
    for key in stats:
        if key.endswith("_frac"):  # shares of each round's equally many completions: their mean
            stats[key] /= sum(key in r.stats for r in rollouts)
    n = len(picks) * g
    return Rollout(
        input_ids=torch.cat(ids),
        attention_mask=torch.cat(attn),
        completion_mask=torch.cat(cmask),
        truncated=cat("truncated"),
        rewards=cat("rewards"),
        reward_components={
            name: torch.cat([r.reward_components[name][rows] for r, rows in rows_of]) for name in first.reward_components
        },
        group_ids=torch.arange(n, device=first.input_ids.device) // g,
        group_size=g,
        prompt_length=tp,
        temperature=first.temperature,
        max_new_tokens=first.max_new_tokens,
        correct=cat("correct"),
        valid=cat("valid"),
        undecodable=cat("undecodable"),
        prompts=[rollouts[k].prompts[group] for k, group in picks],
        completions=[c for r, rows in rows_of for c in r.completions[rows]],
        answers=[a for r, rows in rows_of for a in r.answers[rows]] if first.answers else [],
        golds=[rollouts[k].golds[group] for k, group in picks],
        prompt_ids=[rollouts[k].prompt_ids[group] for k, group in picks] if first.prompt_ids else [],
        stats=stats,
    )


def decode_rows(tokenizer: PreTrainedTokenizerBase, rows: list[list[int]]) -> tuple[list[str], list[bool]]:
    """Texts of token-id rows (special tokens such as EOS left out) and whether each held an unknown id.

    A row is undecodable when one of its ids is one the tokenizer does not know: real checkpoints pad their
    embedding beyond the tokenizer (Qwen2.5: 151,936 rows, 151,665 tokens), and tokenizers drop such ids from
    the text without a word; here they are left out of the text and the row is flagged.
    """
    known = len(tokenizer)
    undecodable = [any(i >= known or i < 0 for i in row) for row in rows]
    if any(undecodable):
        rows = [[i for i in row if 0 <= i < known] for row in rows]
    return tokenizer.batch_decode(rows, skip_special_tokens=True), undecodable


def decode_completions(
    tokenizer: PreTrainedTokenizerBase, completion_ids: Tensor, lengths: Tensor, starts: Tensor | None = None
) -> tuple[list[str], Tensor]:
    """Texts of positions ``starts[i]:lengths[i]`` (default from 0) of each row and undecodable flags [N]."""
    begin = starts.tolist() if starts is not None else [0] * len(completion_ids)
    rows = [row[int(a) : int(n)] for row, a, n in zip(completion_ids.tolist(), begin, lengths.tolist())]
    texts, undecodable = decode_rows(tokenizer, rows)
    return texts, torch.tensor(undecodable, dtype=torch.bool, device=completion_ids.device)


def build_rollout(
    samples: Samples,
    batch: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    composer: RewardComposer,
    temperature: float,
    max_new_tokens: int,
) -> Rollout:
    """Decode, score and pack ``samples`` of the prompts in ``batch`` into a :class:`Rollout`.

    ``batch`` is a collated prompt batch (``input_ids``, ``attention_mask`` [P, Tp], ``prompt``,
    ``answer``, ``id`` and per-row ``metadata``). ``stats`` gets the generation and reward times,
    each reward function's counters, the reward errors of this call (``reward/<name>_errors``), the
    share of completions with undecodable ids (``completions/undecodable_frac``) and what was sampled
    (``sampling/completions``, ``sampling/tokens``: summed over dynamic sampling's rounds).
    """
    g = samples.num_samples
    n = samples.sequences.shape[0]
    device = samples.sequences.device
    lengths = samples.completion_mask.sum(dim=1)  # [N] the model's tokens (the loss tokens)
    context = samples.context_mask if samples.context_mask is not None else samples.completion_mask  # [N, Tc]
    texts, undecodable = decode_completions(tokenizer, samples.completion_ids, context.sum(dim=1))  # transcripts
    metadata = [dict(m) for m in (batch.get("metadata") or [{} for _ in batch["prompt"]]) for _ in range(g)]  # [N]
    answers_text = texts
    if samples.final_turn_start is not None:
        # Multi-turn: rewards judge what the model said last (its final turn), not a tool's output; the whole
        # transcript (environment messages included) is in their metadata as "transcript".
        answers_text, _ = decode_completions(tokenizer, samples.completion_ids, context.sum(dim=1), samples.final_turn_start)
        for m, transcript in zip(metadata, texts):
            m["transcript"] = transcript
    truncated = [bool(x) for x in samples.truncated.tolist()]
    reward_batch = RewardBatch(
        prompts=[p for p in batch["prompt"] for _ in range(g)],
        completions=answers_text,
        golds=[a for a in batch["answer"] for _ in range(g)],
        completion_ids=[f"{pid}/{k}" for pid in batch["id"] for k in range(g)],
        group_ids=[i // g for i in range(n)],
        lengths=[int(x) for x in lengths.tolist()],
        truncated=truncated,
        max_new_tokens=max_new_tokens,
        metadata=metadata,
    )
    start = time.perf_counter()
    total, components = composer(reward_batch)
    if samples.env_rewards is not None:  # the environment's own per-episode rewards: one more component
        components["environment"] = [float(x) for x in samples.env_rewards.tolist()]
        total = [t + e for t, e in zip(total, components["environment"])]
    stats = {
        **samples.stats,
        "time/generation_s": samples.generation_s,
        "time/reward_s": time.perf_counter() - start,
        "completions/undecodable_frac": float(undecodable.float().mean()),
        "sampling/completions": float(n),  # what this round sampled (summed over dynamic sampling's rounds)
        "sampling/tokens": float(lengths.sum()),
    }
    for fn in composer.functions:
        stats.update({f"reward/{key}": value for key, value in fn.counters().items()})
        if composer.error_counts[fn.name]:  # scored 0 after raising (reward_on_error='zero'): this call, all calls
            stats[f"reward/{fn.name}_errors"] = float(composer.last_error_counts[fn.name])
            stats[f"reward/{fn.name}_errors_total"] = float(composer.error_counts[fn.name])
    correctness = composer.correctness
    correct, answers = None, []
    if correctness is not None:
        correct = torch.tensor([v == correctness.correct_value for v in components[correctness.name]], device=device)
        answers = [correctness.extract(t, truncated=f) for t, f in zip(answers_text, truncated)]
    return Rollout(
        input_ids=samples.sequences,
        attention_mask=torch.cat([samples.prompt_mask, context.to(samples.prompt_mask.dtype)], dim=1),
        completion_mask=samples.completion_mask,
        truncated=samples.truncated,
        rewards=torch.tensor(total, device=device, dtype=torch.float32),
        reward_components={k: torch.tensor(v, device=device, dtype=torch.float32) for k, v in components.items()},
        group_ids=torch.arange(n, device=device) // g,
        group_size=g,
        prompt_length=samples.prompt_length,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        correct=correct,
        undecodable=undecodable,
        prompts=list(batch["prompt"]),
        completions=texts,
        answers=answers,
        golds=list(batch["answer"]),
        prompt_ids=[str(i) for i in batch["id"]],
        stats=stats,
    )
