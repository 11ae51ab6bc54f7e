"""Episodes: G multi-turn episodes per prompt, sampled turn by turn with the live policy.

:func:`run_episodes` is the loop of one sampling round. Turn 1 is exactly the single-turn rollout: one
sampler call draws G completions per prompt. The environment reads each episode's turn; episodes it
ends are finished, the others get the environment's message (its tokens) appended and go on: each later
turn is one sampler call over the active episodes' whole contexts (prompt + transcript so far, left-padded),
one completion each. When the environment ends every episode after turn 1 (``SingleTurn``), the sampler's
``Samples`` come back untouched, so single-turn rollouts are bit-identical to a plain sampler call.

Token in, token out: a model turn is kept as the ids it sampled (cut, if the environment says its turn
ended earlier, e.g. at the end of its tool call, at the first token that covers that character: a prefix
of a sample is a sample of the prefix, so the kept ids are still on-policy). Environment tokens are in the
context (``Samples.context_mask``) and never in the loss (``Samples.completion_mask``).

Budgets: ``max_new_tokens`` per model turn, ``max_episode_tokens`` for everything after the prompt (model
and environment tokens), ``environment.max_turns`` model turns. An episode stopped by a budget or the turn
limit while the environment wanted more is truncated; so is one whose last model turn had no EOS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from lightning_grpo.environments.base import Environment, EnvReply
from lightning_grpo.prompt_format import left_pad
from lightning_grpo.rollout import decode_rows
from lightning_grpo.sampling.base import Sampler, SamplingParams, Samples


@dataclass
class _Episode:
    state: Any
    ids: list[int] = field(default_factory=list)  # transcript after the prompt: model and environment tokens
    loss: list[int] = field(default_factory=list)  # 1 on model tokens, 0 on environment tokens
    final_start: int = 0  # where the latest model turn starts in ``ids``
    truncated: bool = False
    reward: float | None = None
    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    error_kinds: list[str] = field(default_factory=list)


def tokens_covering(tokenizer: PreTrainedTokenizerBase, ids: list[int], char_end: int) -> int:
    """The fewest leading tokens of ``ids`` whose decoded text reaches character ``char_end``."""
    low, high = 0, len(ids)
    while low < high:
        mid = (low + high) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) >= char_end:
            high = mid
        else:
            low = mid + 1
    return low


def _turn(
    tokenizer: PreTrainedTokenizerBase, ids: list[int], truncated: bool, reply: EnvReply, text: str
) -> tuple[list[int], bool]:
    """The kept ids of a model turn and whether it ended with its EOS (not cut, not truncated)."""
    if reply.cut_at is not None and reply.cut_at < len(text):
        kept = ids[: max(tokens_covering(tokenizer, ids, reply.cut_at), 1)]
        return kept, False
    return ids, not truncated


def run_episodes(
    sampler: Sampler,
    policy: nn.Module,
    prompt_ids: Tensor,  # [P, Tp] left-padded
    prompt_mask: Tensor,  # [P, Tp]
    params: SamplingParams,  # num_samples = G episodes per prompt, max_new_tokens per model turn
    environment: Environment,
    states: list[Any],  # [P·G] per-episode states from ``environment.start``
    tokenizer: PreTrainedTokenizerBase,
    eos_ids: list[int],
    pad_id: int,
    max_episode_tokens: int,
) -> Samples:
    """Sample G episodes per prompt (see the module docstring); ``Samples`` with the episodes' statistics."""
    first = sampler.sample(policy, prompt_ids, prompt_mask, params, eos_ids, pad_id)
    n = first.sequences.shape[0]
    lengths = first.completion_mask.sum(dim=1).tolist()  # [N]
    rows = [first.completion_ids[i, : int(lengths[i])].tolist() for i in range(n)]
    truncated = first.truncated.tolist()
    env_s = 0.0
    start = time.perf_counter()
    texts, _ = decode_rows(tokenizer, rows)
    replies = environment.step(states, texts, 1)
    env_s += time.perf_counter() - start
    episodes = [_Episode(state=s) for s in states]
    if all(r.done and r.cut_at is None for r in replies):  # single-turn: the samples as they are
        for episode, reply in zip(episodes, replies):
            _account(episode, reply)
        first.stats = _stats(episodes, env_s) if environment.max_turns > 1 else {}
        first.env_rewards = _env_rewards(episodes, first.sequences.device)
        return first
    generation_s = first.generation_s
    active = _apply(episodes, list(range(n)), rows, truncated, replies, texts, 1, environment, tokenizer, max_episode_tokens)
    prompts = [prompt_ids[p][prompt_mask[p].bool()].tolist() for p in range(prompt_ids.shape[0])]  # one per prompt
    prompt_rows = [prompts[i // params.num_samples] for i in range(n)]
    turn = 1
    while active:
        turn += 1
        ids, mask = left_pad([prompt_rows[i] + episodes[i].ids for i in active], pad_id)  # [A, T] each
        budget = max(max_episode_tokens - len(episodes[i].ids) for i in active)
        turn_params = replace(params, num_samples=1, max_new_tokens=max(1, min(params.max_new_tokens, budget)))
        samples = sampler.sample(policy, ids.to(prompt_ids.device), mask.to(prompt_mask.device), turn_params, eos_ids, pad_id)
        generation_s += samples.generation_s
        new_lengths = samples.completion_mask.sum(dim=1).tolist()
        new_rows, new_truncated = [], []
        for row, i in enumerate(active):
            kept = samples.completion_ids[row, : int(new_lengths[row])].tolist()
            room = max_episode_tokens - len(episodes[i].ids)
            cut = len(kept) > room
            new_rows.append(kept[:room])
            new_truncated.append(bool(samples.truncated[row]) or cut)
        start = time.perf_counter()
        texts, _ = decode_rows(tokenizer, new_rows)
        replies = environment.step([episodes[i].state for i in active], texts, turn)
        env_s += time.perf_counter() - start
        active = _apply(episodes, active, new_rows, new_truncated, replies, texts, turn, environment, tokenizer, max_episode_tokens)
    return _pack(episodes, first, prompt_ids, pad_id, generation_s, env_s)


def _account(episode: _Episode, reply: EnvReply) -> None:
    episode.turns += 1
    episode.tool_calls += reply.tool_calls
    episode.tool_errors += reply.tool_errors
    episode.error_kinds += list(reply.error_kinds)
    if reply.reward is not None:
        episode.reward = (episode.reward or 0.0) + reply.reward


def _apply(
    episodes: list[_Episode],
    active: list[int],
    rows: list[list[int]],
    truncated: list[bool],
    replies: list[EnvReply],
    texts: list[str],
    turn: int,
    environment: Environment,
    tokenizer: PreTrainedTokenizerBase,
    max_episode_tokens: int,
) -> list[int]:
    """Append each active episode's model turn (and the environment's reply); the episodes still going."""
    still = []
    for i, row, cut_off, reply, text in zip(active, rows, truncated, replies, texts):
        episode = episodes[i]
        _account(episode, reply)
        kept, had_eos = _turn(tokenizer, row, cut_off, reply, text)
        episode.final_start = len(episode.ids)
        episode.ids += kept
        episode.loss += [1] * len(kept)
        if reply.done:
            episode.truncated = not had_eos and reply.cut_at is None
            continue
        message = tokenizer(environment.render(reply, tokenizer, had_eos), add_special_tokens=False)["input_ids"]
        if turn >= environment.max_turns or len(episode.ids) + len(message) >= max_episode_tokens:
            episode.truncated = True  # the environment wanted more: cut off
            continue
        episode.ids += message
        episode.loss += [0] * len(message)
        still.append(i)
    return still


def _pack(
    episodes: list[_Episode], first: Samples, prompt_ids: Tensor, pad_id: int, generation_s: float, env_s: float
) -> Samples:
    device = first.sequences.device
    g = first.num_samples
    tc = max(len(e.ids) for e in episodes)
    n = len(episodes)
    completion = torch.full((n, tc), pad_id, dtype=first.sequences.dtype)
    loss = torch.zeros((n, tc), dtype=first.completion_mask.dtype)
    context = torch.zeros((n, tc), dtype=first.completion_mask.dtype)
    for i, e in enumerate(episodes):
        completion[i, : len(e.ids)] = torch.tensor(e.ids, dtype=completion.dtype)
        loss[i, : len(e.loss)] = torch.tensor(e.loss, dtype=loss.dtype)
        context[i, : len(e.ids)] = 1
    sequences = torch.cat([prompt_ids.repeat_interleave(g, dim=0), completion.to(device)], dim=1)  # [N, Tp + Tc]
    samples = Samples(
        sequences=sequences,
        completion_mask=loss.to(device),
        truncated=torch.tensor([e.truncated for e in episodes], device=device),
        prompt_mask=first.prompt_mask,
        num_samples=g,
        generation_s=generation_s,
        context_mask=context.to(device),
        final_turn_start=torch.tensor([e.final_start for e in episodes], device=device),
    )
    samples.stats = _stats(episodes, env_s)
    samples.env_rewards = _env_rewards(episodes, device)
    return samples


def _env_rewards(episodes: list[_Episode], device: torch.device) -> Tensor | None:
    if all(e.reward is None for e in episodes):
        return None
    return torch.tensor([e.reward or 0.0 for e in episodes], dtype=torch.float32, device=device)  # [N]


def _stats(episodes: list[_Episode], env_s: float) -> dict[str, float]:
    """Totals over the round's episodes (dynamic sampling sums its rounds): turns, tool calls and errors."""
    kinds: dict[str, float] = {}
    for e in episodes:
        for kind in e.error_kinds:
            kinds[f"episode/tool_errors_{kind}"] = kinds.get(f"episode/tool_errors_{kind}", 0.0) + 1
    return {
        **kinds,
        "episode/count": float(len(episodes)),
        "episode/turns": float(sum(e.turns for e in episodes)),
        "episode/multi_turn": float(sum(e.turns > 1 for e in episodes)),
        "episode/tool_calls": float(sum(e.tool_calls for e in episodes)),
        "episode/tool_errors": float(sum(e.tool_errors for e in episodes)),
        "time/environment_s": env_s,
    }
