"""RolloutDataModule: prompts → on-device groups of completions → scored :class:`Rollout`.

One rollout, top-down (``on_after_batch_transfer`` → ``make_rollout``):

1. the loader yields P prompts per rank (tokenised, left-padded, with their source rows' fields);
2. the sampler (``data.sampler``, any :class:`~lightning_grpo.sampling.Sampler`) draws G completions
   per prompt with the live policy: :class:`~lightning_grpo.sampling.Samples`;
3. :func:`~lightning_grpo.rollout.build_rollout` decodes and scores them: a :class:`Rollout`;
4. with ``dynamic_sampling`` (DAPO), :class:`~lightning_grpo.dynamic_sampling.DynamicSampling`
   refills the rollout's uninformative groups by repeating 2-3 on more prompts;

and ``training_step`` receives the ``Rollout``. Sampling seeds depend on (seed, rank, rollout index),
so ranks draw different completions and a resumed run draws the same ones as an uninterrupted run.
Prompts come from a :class:`~lightning_grpo.prompt_stream.PromptStream` whose position is part of the
data module's state, so a resumed run also continues with the same prompts.

Validation batches (held-out prompts) go through the same sampler and ``build_rollout`` (greedy, and
``val_num_samples`` samples per prompt, judged by the correctness reward) and become an
:class:`~lightning_grpo.evaluation.EvalBatch`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader
from transformers import AutoConfig, PreTrainedTokenizerBase

from lightning_grpo.dynamic_sampling import DynamicSampling
from lightning_grpo.evaluation import EvalBatch, eval_batch
from lightning_grpo.metrics import stable_prompt_id
from lightning_grpo.models import eos_token_ids, load_tokenizer
from lightning_grpo.prompt_stream import PromptStream, batch_indices
from lightning_grpo.rewards.base import RewardComposer, RewardFunction
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rollout import PROMPT_FIELDS, Rollout, build_rollout
from lightning_grpo.sampling import FastSampler, HFSampler, Sampler, SamplingParams, Samples
from lightning_grpo.sharding import gathered_for_generation
from lightning_grpo.sources import Arithmetic, PromptSource

_SAMPLER_BACKENDS = {"fast": FastSampler, "hf": HFSampler}


class RolloutDataModule(LightningDataModule):
    def __init__(
        self,
        source: PromptSource | None = None,
        tokenizer: str = "",
        prompts_per_step: int = 4,
        group_size: int = 8,
        max_new_tokens: int = 16,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        sampler: Sampler | None = None,
        sampler_backend: Literal["fast", "hf"] | None = None,
        rewards: list[RewardFunction] | None = None,
        reward_on_error: Literal["raise", "zero"] = "raise",
        prompt_template: str = "{question}",
        use_chat_template: bool = True,
        system_prompt: str | None = None,
        dynamic_sampling: DynamicSampling | None = None,
        val_source: PromptSource | None = None,
        val_batch_size: int = 32,
        val_num_samples: int = 4,
        val_greedy: bool = True,
        val_max_prompts: int | None = None,
        seed: int = 0,
    ) -> None:
        """
        Args:
            source: where prompts and gold answers come from (default: synthetic arithmetic).
            tokenizer: tokenizer path or name; the CLI links it to ``model.model_name_or_path``.
            prompts_per_step: prompts per rollout batch over all ranks; each rank samples
                ``prompts_per_step / world_size`` of them (P), so it must divide evenly.
            group_size: G completions per prompt (>= 2 for estimators that compare within a group).
            max_new_tokens: completion budget in tokens.
            temperature, top_p, top_k: the sampling distribution (any sampler draws from it);
                temperature also scales every log-prob.
            sampler: how completions are drawn (default ``FastSampler()``: one prefill per prompt
                shared by its G samples, lean static-cache decode steps, finished rows dropped;
                ``HFSampler()``: HF ``generate``, the reference; same distribution, tested). Where
                the fast loop cannot run a model it uses HF ``generate`` and logs why.
            sampler_backend: shorthand for ``sampler``: ``fast`` = ``FastSampler()``, ``hf`` =
                ``HFSampler()`` (set one of the two).
            rewards: reward functions, summed with their weights (default: exact integer match).
            reward_on_error: a reward function that raises stops the run with an error naming it
                ('raise') or scores 0 and is counted ('zero').
            prompt_template: ``str.format`` template with ``{question}``: the user's message. With a chat
                template it becomes the user turn; without one it is the whole prompt.
            use_chat_template: wrap the prompt as a user turn with the tokenizer's chat template.
            system_prompt: a system turn before the question (e.g. "Please reason step by step, and put
                your final answer within \\boxed{}."); it replaces the template's default system turn
                (Qwen2.5 adds one when none is given). Without a chat template it is put before the
                ``prompt_template`` text, followed by a blank line.
            dynamic_sampling: DAPO's dynamic sampling (``DynamicSampling(max_extra_rounds=4)``):
                drop groups whose correctness (or, without a correctness reward, total reward) is
                all equal, and sample more prompts until the batch is full again (None: off).
            val_source: held-out prompts (default: the ``validation`` split of ``source``, e.g. the
                arithmetic task's held-out questions or GSM8K's test file).
            val_batch_size: held-out prompts per validation batch and rank.
            val_num_samples: sampled completions per held-out prompt (k of pass@k and maj@k; 0: none).
            val_greedy: also decode each held-out prompt greedily (greedy accuracy).
            val_max_prompts: evaluate only the first this many held-out prompts (None: all).
            seed: base seed of the prompt order and the sampler.
        """
        super().__init__()
        if prompts_per_step < 1:
            raise ValueError(f"prompts_per_step must be >= 1, got {prompts_per_step}")
        if "{question}" not in prompt_template:
            raise ValueError(f"prompt_template must contain '{{question}}', got {prompt_template!r}")
        self.source = source if source is not None else Arithmetic()
        self.tokenizer_name = tokenizer
        self.prompts_per_step = prompts_per_step
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = group_size
        self.sampling = SamplingParams(group_size, max_new_tokens, temperature, top_p, top_k)
        if sampler is not None and sampler_backend is not None:
            raise ValueError(f"set data.sampler or data.sampler_backend, not both (got {type(sampler).__name__} and {sampler_backend!r})")
        if sampler_backend is not None and sampler_backend not in _SAMPLER_BACKENDS:
            raise ValueError(f"sampler_backend must be one of {sorted(_SAMPLER_BACKENDS)}, got {sampler_backend!r}")
        self.sampler = sampler if sampler is not None else _SAMPLER_BACKENDS[sampler_backend or "fast"]()
        self.composer = RewardComposer(rewards if rewards is not None else [ExactInteger()], reward_on_error)
        if val_batch_size < 1 or val_num_samples < 0 or (val_max_prompts is not None and val_max_prompts < 1):
            raise ValueError(
                f"need val_batch_size >= 1, val_num_samples >= 0 and val_max_prompts >= 1 or None; got "
                f"{val_batch_size}, {val_num_samples}, {val_max_prompts}"
            )
        if not val_greedy and val_num_samples == 0:
            raise ValueError("validation with val_greedy=False and val_num_samples=0 would generate nothing")
        self.prompt_template = prompt_template
        self.use_chat_template = use_chat_template
        self.system_prompt = system_prompt
        self.dynamic_sampling = dynamic_sampling
        self.val_source = val_source
        self.val_batch_size = val_batch_size
        self.val_num_samples = val_num_samples
        self.val_greedy = val_greedy
        self.val_max_prompts = val_max_prompts
        self.seed = seed
        self.rollouts_sampled = 0  # sampling rounds so far (seeds the sampler)
        self.batches_consumed = 0  # training prompt batches turned into rollouts (the stream's position)
        self.extra_batches_consumed = 0  # dynamic sampling's extra prompt batches
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self._warned_undecodable = False
        self.datasets: dict[str, Any] = {}

    # ---- set-up -------------------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    @property
    def prompts_per_rank(self) -> int:
        if self.prompts_per_step % self.world_size:
            raise ValueError(
                f"prompts_per_step={self.prompts_per_step} is not a whole number of groups per rank "
                f"on {self.world_size} ranks; use a multiple of {self.world_size}"
            )
        return self.prompts_per_step // self.world_size

    def format_prompt(self, question: str) -> str:
        assert self.tokenizer is not None
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        text = self.prompt_template.format(question=question)  # the user's words, with or without a chat template
        if self.use_chat_template and self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                system + [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return f"{self.system_prompt}\n\n{text}" if self.system_prompt else text

    def setup(self, stage: str) -> None:
        if not self.tokenizer_name:
            raise ValueError("no tokenizer given: set data.tokenizer (the CLI links model.model_name_or_path)")
        self.tokenizer = load_tokenizer(self.tokenizer_name)
        for fn in self.composer.functions:
            fn.setup()  # e.g. MathReward's verifier worker pool, before the first rollout instead of in it
        _ = self.prompts_per_rank  # validates divisibility early
        self.max_prompt_tokens = self._context_length() - self.sampling.max_new_tokens
        if self.max_prompt_tokens < 1:
            raise ValueError(
                f"max_new_tokens={self.sampling.max_new_tokens} leaves no room for a prompt in the model's "
                f"context of {self._context_length()} tokens"
            )
        if stage == "fit" and "train" not in self.datasets:
            self.datasets["train"] = self._prepare(self.source.load("train"))
        if stage in ("fit", "validate") and "validation" not in self.datasets:
            self.datasets["validation"] = self._held_out(required=stage == "validate")

    def _context_length(self) -> int:
        config = AutoConfig.from_pretrained(self.tokenizer_name)
        return int(getattr(config, "max_position_embeddings", None) or self.tokenizer.model_max_length)

    def _prepare(self, table: Any) -> Any:
        # A column from a list, not ``table.map(fn)``: ``fn`` would close over this module (tokenizer and
        # all), which ``datasets`` cannot fingerprint, so every run warned and drew a progress bar.
        prompts = [self.format_prompt(question) for question in table["question"]]
        if "prompt" in table.column_names:
            table = table.remove_columns("prompt")
        table = table.add_column("prompt", prompts)
        lengths = [len(ids) for ids in self.tokenizer(list(table["prompt"]), add_special_tokens=False)["input_ids"]]
        longest = max(range(len(lengths)), key=lengths.__getitem__)
        if lengths[longest] > self.max_prompt_tokens:
            raise ValueError(
                f"prompt {table[longest]['id']!r} has {lengths[longest]} tokens, more than the model's context "
                f"minus the completion budget ({self.max_prompt_tokens} = context - max_new_tokens "
                f"{self.sampling.max_new_tokens}); shorten it, filter the data or lower max_new_tokens"
            )
        return table

    def _held_out(self, required: bool) -> Any | None:
        """The held-out prompts, or None (with a warning) when the source has none and none is required."""
        source = self.val_source if self.val_source is not None else self.source
        try:
            table = source.load("validation")
            if len(table) == 0:
                raise ValueError(f"the held-out prompts of {type(source).__name__} are empty")
        except ValueError as error:
            if required or self.val_source is not None:
                raise ValueError(f"no held-out prompts for validation: {error}; set data.val_source") from error
            rank_zero_warn(f"no validation during fit: {error}")
            return None
        if self.val_max_prompts is not None:
            table = table.select(range(min(self.val_max_prompts, len(table))))
        return self._prepare(table)

    @property
    def rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        _require_an_end(self.trainer)
        stream = PromptStream(
            self.datasets["train"], self.prompts_per_rank, self.seed, self.rank, self.world_size, self.collate,
            next_batch=lambda: self.batches_consumed,
        )
        return DataLoader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader | list:
        table = self.datasets.get("validation")
        if table is None:
            return []
        # Under DDP/FSDP Lightning's DistributedSampler may repeat prompts to even out the ranks;
        # the module's EvalAccumulator counts each prompt id once.
        return DataLoader(table, batch_size=self.val_batch_size, shuffle=False, collate_fn=self.collate)

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        encoded = self.tokenizer(
            [r["prompt"] for r in rows], padding=True, return_tensors="pt", add_special_tokens=False
        )
        return {
            "input_ids": encoded["input_ids"],  # [P, Tp]
            "attention_mask": encoded["attention_mask"],  # [P, Tp]
            "prompt": [r["prompt"] for r in rows],
            "answer": [r["answer"] for r in rows],
            "id": [r["id"] for r in rows],
            "metadata": [{k: v for k, v in r.items() if k not in PROMPT_FIELDS} for r in rows],  # for rewards
        }

    # ---- rollouts ------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is None:
            return batch
        if self.trainer.training:
            self.batches_consumed += 1
            return self.make_rollout(batch)
        if self.trainer.validating or self.trainer.sanity_checking:
            return self.make_eval_batch(batch)
        return batch

    def make_rollout(self, batch: dict[str, Any]) -> Rollout:
        """G completions per prompt from the live policy, scored (with dynamic sampling: refilled)."""
        rollout = self.sample_rollout(batch)
        if self.dynamic_sampling is None:
            return rollout
        device = batch["input_ids"].device
        return self.dynamic_sampling.fill(
            rollout,
            sample_more=lambda: self.sample_rollout(self._extra_prompts(device)),
            any_rank_short=lambda short: self._any_rank_short(short, device),
            pad_id=self.tokenizer.pad_token_id,
        )

    def sample_rollout(self, batch: dict[str, Any]) -> Rollout:
        """One sampling round: sample, then :func:`build_rollout` with every reward function."""
        samples = self.sample(batch, self.sampling, self._sampling_seed())
        self.rollouts_sampled += 1
        rollout = build_rollout(
            samples, batch, self.tokenizer, self.composer, self.sampling.temperature, self.sampling.max_new_tokens
        )
        if rollout.stats["completions/undecodable_frac"] > 0 and not self._warned_undecodable:
            self._warned_undecodable = True
            rank_zero_warn(
                f"{rollout.stats['completions/undecodable_frac']:.1%} of this rollout's completions hold token ids the "
                f"tokenizer cannot decode (>= {len(self.tokenizer)}: the model's embedding is larger than its "
                "tokenizer); their text leaves those ids out. Logged as completions/undecodable_frac; warned once."
            )
        return rollout

    def make_eval_batch(self, batch: dict[str, Any]) -> EvalBatch:
        """Greedy and sampled completions of held-out prompts, judged by the correctness reward only."""
        judge = self.composer.correctness
        if judge is None:
            raise ValueError(
                "validation needs a correctness reward (one with is_correctness, e.g. ExactInteger or "
                f"MathReward) among data.rewards; got {[f.name for f in self.composer.functions]}"
            )
        judges = RewardComposer([judge], self.composer.on_error)
        seed = (self.seed * 1_000_003 + stable_prompt_id(str(batch["id"][0]))) % (2**63 - 1)

        def judged(params: SamplingParams) -> Rollout:
            samples = self.sample(batch, params, seed)
            return build_rollout(samples, batch, self.tokenizer, judges, params.temperature, params.max_new_tokens)

        greedy = judged(replace(self.sampling, num_samples=1, greedy=True)) if self.val_greedy else None
        sampled = judged(replace(self.sampling, num_samples=self.val_num_samples)) if self.val_num_samples else None
        return eval_batch(greedy, sampled)

    def sample(self, batch: dict[str, Any], params: SamplingParams, seed: int) -> Samples:
        """``params.num_samples`` completions per prompt of ``batch`` with the live policy, seeded by ``seed``.

        The global RNG is forked, so sampling leaves it as it was (training draws stay reproducible).
        Sampling runs in the trainer's precision context, like the training forward.
        """
        policy = self.trainer.lightning_module.policy
        devices = [batch["input_ids"].device] if batch["input_ids"].is_cuda else []
        # The trainer's precision context (bf16 autocast under bf16-mixed), as in the training forward:
        # the sampler then draws from the same numerics the loss sees, with a half-size KV cache.
        precision = self.trainer.precision_plugin.forward_context()
        with torch.random.fork_rng(devices=devices), gathered_for_generation(policy), precision:
            torch.manual_seed(seed)
            return self.sampler.sample(
                policy, batch["input_ids"], batch["attention_mask"], params,
                eos_token_ids(policy, self.tokenizer), self.tokenizer.pad_token_id,
            )

    def _sampling_seed(self) -> int:
        return (self.seed * 1_000_003 + self.rank * 7_919 + self.rollouts_sampled * 104_729) % (2**63 - 1)

    def _extra_prompts(self, device: torch.device) -> dict[str, Any]:
        """More prompts for dynamic sampling, from a second permutation (seed + 1), resumable."""
        table = self.datasets["train"]
        rows = batch_indices(
            len(table), self.extra_batches_consumed, self.seed + 1_000_000, self.rank, self.world_size, self.prompts_per_rank
        )
        self.extra_batches_consumed += 1
        batch = self.collate([table[i] for i in rows])
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _any_rank_short(self, short: bool, device: torch.device) -> bool:
        flag = torch.tensor(float(short), device=device)
        if self.trainer is not None and self.trainer.world_size > 1:
            flag = self.trainer.strategy.reduce(flag, reduce_op="max")
        return bool(flag.item())

    # ---- exact resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rollouts_sampled": self.rollouts_sampled,
            "batches_consumed": self.batches_consumed,
            "extra_batches_consumed": self.extra_batches_consumed,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rollouts_sampled = int(state_dict["rollouts_sampled"])
        self.batches_consumed = int(state_dict.get("batches_consumed", 0))
        self.extra_batches_consumed = int(state_dict.get("extra_batches_consumed", 0))


def _require_an_end(trainer: Any) -> None:
    """The prompt stream is endless: a fit needs max_steps (or a batch limit per epoch, or max_time)."""
    if trainer is None or trainer.max_steps >= 0:
        return
    from lightning.pytorch.callbacks import Timer

    batch_limit = isinstance(trainer.limit_train_batches, int) and trainer.max_epochs not in (None, -1)
    if not batch_limit and not any(isinstance(c, Timer) for c in trainer.callbacks):
        raise ValueError(
            "trainer.max_steps is not set, but the training prompts are an endless stream (each data epoch "
            "a new permutation), so the run would not end: set trainer.max_steps (optimizer steps), or "
            "trainer.max_time, or trainer.limit_train_batches with trainer.max_epochs"
        )

