"""RolloutEngine: the whole path from a batch of prompts to a scored :class:`Rollout`.

The data module loads and formats prompts; the engine owns everything that turns them into training
data: the sampler, the environment (single-turn by default, or multi-turn with tools), the reward
functions, DAPO's dynamic sampling and the sampling counter that seeds it. One rollout, top-down:

1. ``collect(policy, prompts, more_prompts)``: a sampling round (:meth:`sample_round`) runs G episodes
   per prompt (:func:`~lightning_grpo.episodes.run_episodes`: the sampler, then the environment's turns)
   and scores them (:func:`~lightning_grpo.rollout.build_rollout`);
2. with ``dynamic_sampling``, uninformative groups are refilled by further rounds on prompt batches
   pulled from ``more_prompts`` (an iterator the data module hands down).

``evaluate`` runs held-out prompts through the same episodes (greedy, and k samples) and judges them
with the correctness reward. Seeds depend on (seed, rank, rounds sampled so far), so ranks draw different
completions and a resumed run draws the same ones; the counter is part of the checkpoint.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Iterator, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from transformers import PreTrainedTokenizerBase

from lightning_grpo.dynamic_sampling import DynamicSampling
from lightning_grpo.environments.base import Environment, Problem
from lightning_grpo.environments.single_turn import SingleTurn
from lightning_grpo.episodes import run_episodes
from lightning_grpo.evaluation import EvalBatch, eval_batch
from lightning_grpo.metrics import stable_prompt_id
from lightning_grpo.models import eos_token_ids
from lightning_grpo.rewards.base import RewardComposer, RewardFunction
from lightning_grpo.rewards.function import reward_function
from lightning_grpo.rollout import Rollout, build_rollout
from lightning_grpo.sampling import FastSampler, Sampler, Sampling, SamplingParams, Samples
from lightning_grpo.sharding import gathered_for_generation


class RolloutEngine:
    def __init__(
        self,
        group_size: int = 8,
        sampling: Sampling = Sampling(),
        sampler: Sampler | None = None,
        environment: Environment | None = None,
        rewards: list[RewardFunction | str] | None = None,
        shaping: list[RewardFunction] | None = None,
        reward_on_error: Literal["raise", "zero"] = "raise",
        dynamic_sampling: DynamicSampling | None = None,
        max_episode_tokens: int | None = None,
        reward_time_limit_s: float | None = 600.0,
    ) -> None:
        """
        Args:
            group_size: G episodes (completions) per prompt (>= 2 for estimators that compare in a group).
            sampling: the distribution (temperature, then top-k, then top-p) and ``max_new_tokens`` per
                model turn; temperature also scales every log-prob.
            sampler: how completions are drawn (default ``FastSampler()``: one prefill per prompt shared by
                its G samples, static-cache decode, finished rows dropped; ``HFSampler()``: HF ``generate``).
            environment: what happens after each model turn (default ``SingleTurn()``: nothing, one turn;
                ``ToolEnvironment()``: tool calls run and their output returned, up to its ``max_turns``).
            rewards: the task's reward functions over the episode's final model turn, summed with their weights
                (required: e.g. ``MathReward``, ``ExactInteger``, or the import path of a plain function
                ``(completions, **kwargs) -> list[float]`` such as ``myreward.brevity``; docs/rewards.md); an
                environment's own rewards are the ``environment`` component.
            shaping: rewards an objective recipe adds to the task's, scored after them (e.g. DAPO's
                ``OverlongPenalty`` sized as a fraction of the budget, AGPO's ``AGPOLengthReward`` reading the
                task's correctness reward), so a method's recipe stacks on any task without restating its rewards.
            reward_on_error: a reward function that raises stops the run naming it ('raise') or scores 0
                and is counted ('zero').
            dynamic_sampling: DAPO's dynamic sampling (``DynamicSampling(max_extra_rounds=4)``): drop groups
                whose correctness (without a correctness reward: total reward) is all equal and refill.
            max_episode_tokens: budget of all tokens after the prompt in a multi-turn episode (model and
                environment); None: ``max_new_tokens × environment.max_turns``. Single-turn: max_new_tokens.
            reward_time_limit_s: a reward call running longer is abandoned and handled by ``reward_on_error``
                (counted); a function's own ``time_limit_s`` takes precedence; None: no limit.
        """
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = group_size
        self.sampling = sampling
        self.sampler = sampler if sampler is not None else FastSampler()
        self.environment = environment if environment is not None else SingleTurn()
        if self.environment.max_turns < 1:
            raise ValueError(f"environment.max_turns must be >= 1, got {self.environment.max_turns}")
        if not rewards:
            raise ValueError(
                "no data.rollout.rewards: name at least one reward function, e.g. lightning_grpo.rewards.MathReward "
                "(a sympy answer verifier) or lightning_grpo.rewards.ExactInteger, or a function of your own"
            )
        functions = [reward_function(entry) for entry in rewards] + list(shaping or [])
        self.composer = RewardComposer(functions, reward_on_error, reward_time_limit_s)
        self.dynamic_sampling = dynamic_sampling
        if max_episode_tokens is not None and max_episode_tokens < sampling.max_new_tokens:
            raise ValueError(
                f"max_episode_tokens={max_episode_tokens} is less than one turn's max_new_tokens={sampling.max_new_tokens}"
            )
        self._max_episode_tokens = max_episode_tokens
        self.rounds_sampled = 0  # sampling rounds so far (seeds the sampler); checkpointed
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.seed, self.rank = 0, 0
        self._precision: Callable[[], ContextManager[Any]] = contextlib.nullcontext
        self._reduce_max: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
        self._warned_undecodable = False

    # ---- set-up ---------------------------------------------------------------------------------
    @property
    def max_episode_tokens(self) -> int:
        """All tokens after the prompt: the completion budget of one episode (and of the prompt-length check)."""
        if self.environment.max_turns == 1:
            return self.sampling.max_new_tokens
        return self._max_episode_tokens or self.sampling.max_new_tokens * self.environment.max_turns

    def attach(
        self,
        tokenizer: PreTrainedTokenizerBase,
        seed: int,
        rank: int = 0,
        precision: Callable[[], ContextManager[Any]] | None = None,
        reduce_max: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """What the engine needs from the run: the tokenizer, the seed and rank, the trainer's precision
        context (sampling sees the numerics of the training forward) and a max over ranks."""
        self.tokenizer, self.seed, self.rank = tokenizer, seed, rank
        self._precision = precision or contextlib.nullcontext
        self._reduce_max = reduce_max or (lambda t: t)

    def setup(self) -> None:
        """Start reward and environment workers ahead of the first rollout (e.g. MathReward's pool)."""
        for fn in self.composer.functions:
            fn.setup()
        self.environment.setup()

    # ---- training rollouts ---------------------------------------------------------------------
    def collect(self, policy: nn.Module, prompts: dict[str, Any], more_prompts: Iterator[dict[str, Any]]) -> Rollout:
        """G episodes per prompt of ``prompts`` from the live policy, scored (with dynamic sampling: refilled
        from batches pulled from ``more_prompts``)."""
        rollout = self.sample_round(policy, prompts)
        if self.dynamic_sampling is None:
            return rollout
        return self.dynamic_sampling.fill(
            rollout,
            sample_more=lambda: self.sample_round(policy, next(more_prompts)),
            any_rank_short=self._any_rank_short,
            pad_id=self.tokenizer.pad_token_id,
        )

    def sample_round(self, policy: nn.Module, prompts: dict[str, Any]) -> Rollout:
        """One sampling round: episodes, then :func:`build_rollout` with every reward function."""
        seed = (self.seed * 1_000_003 + self.rank * 7_919 + self.rounds_sampled * 104_729) % (2**63 - 1)
        samples = self._episodes(policy, prompts, self.sampling.params(self.group_size), seed)
        self.rounds_sampled += 1
        rollout = build_rollout(
            samples, prompts, self.tokenizer, self.composer, self.sampling.temperature, self.max_episode_tokens
        )
        if rollout.stats["completions/undecodable_frac"] > 0 and not self._warned_undecodable:
            self._warned_undecodable = True
            rank_zero_warn(
                f"{rollout.stats['completions/undecodable_frac']:.1%} of this rollout's completions hold token ids the "
                f"tokenizer cannot decode (>= {len(self.tokenizer)}: the model's embedding is larger than its "
                "tokenizer); their text leaves those ids out. Logged as completions/undecodable_frac; warned once."
            )
        return rollout

    # ---- held-out evaluation ---------------------------------------------------------------------
    def evaluate(self, policy: nn.Module, prompts: dict[str, Any], greedy: bool, num_samples: int) -> EvalBatch:
        """Greedy and ``num_samples`` sampled episodes of held-out prompts, judged by the correctness reward."""
        judge = self.composer.correctness
        if judge is None:
            raise ValueError(
                "validation needs a correctness reward (one with is_correctness, e.g. ExactInteger or "
                f"MathReward) among data.rollout.rewards; got {[f.name for f in self.composer.functions]}"
            )
        judges = RewardComposer([judge], self.composer.on_error, self.composer.time_limit_s)
        seed = (self.seed * 1_000_003 + stable_prompt_id(str(prompts["id"][0]))) % (2**63 - 1)

        def judged(params: SamplingParams) -> Rollout:
            samples = self._episodes(policy, prompts, params, seed)
            return build_rollout(samples, prompts, self.tokenizer, judges, params.temperature, self.max_episode_tokens)

        greedy_rollout = judged(self.sampling.params(1, greedy=True)) if greedy else None
        sampled = judged(self.sampling.params(num_samples)) if num_samples else None
        return eval_batch(greedy_rollout, sampled)

    # ---- sampling --------------------------------------------------------------------------------
    def _episodes(self, policy: nn.Module, prompts: dict[str, Any], params: SamplingParams, seed: int) -> Samples:
        """``params.num_samples`` episodes per prompt, seeded by ``seed``; the global RNG is left as it was.

        Generation runs in the trainer's precision context with an FSDP2 policy's parameters gathered once.
        """
        ids = prompts["input_ids"]
        devices = [ids.device] if ids.is_cuda else []
        metadata = prompts.get("metadata") or [{} for _ in prompts["prompt"]]
        states = [
            self.environment.start(Problem(str(m.get("question", p)), str(a), dict(m)))
            for p, a, m in zip(prompts["prompt"], prompts["answer"], metadata)
            for _ in range(params.num_samples)
        ]
        with torch.random.fork_rng(devices=devices), gathered_for_generation(policy), self._precision():
            torch.manual_seed(seed)
            return run_episodes(
                self.sampler, policy, ids, prompts["attention_mask"], params, self.environment, states,
                self.tokenizer, eos_token_ids(policy, self.tokenizer), self.tokenizer.pad_token_id,
                self.max_episode_tokens,
            )

    def _any_rank_short(self, short: bool) -> bool:
        return bool(self._reduce_max(torch.tensor(float(short))).item())

    # ---- exact resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rollouts_sampled": self.rounds_sampled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rounds_sampled = int(state["rollouts_sampled"])
