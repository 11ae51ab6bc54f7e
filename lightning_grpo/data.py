"""RolloutDataModule: prompts → on-device groups of completions → scored :class:`Rollout`.

The loader yields P prompts per rank (tokenised, left-padded). Once the batch is on the device,
``on_after_batch_transfer`` samples G completions per prompt with the live policy and scores them;
``training_step`` then receives a ``Rollout``. Sampling seeds depend on (seed, rank, rollout index),
so ranks draw different completions and a resumed run draws the same ones as an uninterrupted run.
Prompts come from a :class:`~lightning_grpo.prompt_stream.PromptStream` whose position is part of the
data module's state, so a resumed run also continues with the same prompts.

Validation batches (held-out prompts) become an :class:`~lightning_grpo.evaluation.EvalBatch`: greedy
and ``val_num_samples`` sampled completions per prompt, judged by the correctness reward.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader
from transformers import AutoConfig, PreTrainedTokenizerBase

from lightning_grpo.evaluation import EvalBatch, evaluate_batch
from lightning_grpo.models import eos_token_ids, load_tokenizer
from lightning_grpo.prompt_stream import PromptStream, batch_indices
from lightning_grpo.rewards.base import RewardBatch, RewardComposer, RewardFunction
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rollout import GroupSampler, Rollout, gather_groups
from lightning_grpo.sharding import gathered_for_generation
from lightning_grpo.sources import Arithmetic, PromptSource


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
        sampler_backend: Literal["hf", "fast"] = "hf",
        rewards: list[RewardFunction] | None = None,
        reward_on_error: Literal["raise", "zero"] = "raise",
        prompt_template: str = "{question}",
        use_chat_template: bool = True,
        dynamic_sampling: bool = False,
        max_extra_rounds: int = 4,
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
            group_size: G completions per prompt (>= 2).
            max_new_tokens: completion budget in tokens.
            temperature, top_p, top_k: sampling; temperature also scales every log-prob.
            sampler_backend: ``hf`` (HF ``generate``, the reference) or ``fast`` (one prefill per
                prompt shared by its G samples, finished rows dropped; same distribution, tested).
            rewards: reward functions, summed with their weights (default: exact integer match).
            reward_on_error: a reward function that raises stops the run with an error naming it
                ('raise') or scores 0 and is counted ('zero').
            prompt_template: ``str.format`` template with ``{question}``, used when the tokenizer has
                no chat template or ``use_chat_template`` is False.
            use_chat_template: wrap the prompt as a user turn with the tokenizer's chat template.
            dynamic_sampling: DAPO's dynamic sampling: drop groups whose correctness (or, without a
                correctness reward, total reward) is all equal, and sample more prompts until the
                batch is full again.
            max_extra_rounds: bound on the extra sampling rounds per rollout; when it is reached the
                batch is completed with dropped groups that carry no loss (logged as
                ``sampling/kept_group_frac`` < 1).
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
        self.sampler = GroupSampler(group_size, max_new_tokens, temperature, top_p, top_k, backend=sampler_backend)
        self.composer = RewardComposer(rewards if rewards is not None else [ExactInteger()], reward_on_error)
        if max_extra_rounds < 0:
            raise ValueError(f"max_extra_rounds must be >= 0, got {max_extra_rounds}")
        if val_batch_size < 1 or val_num_samples < 0 or (val_max_prompts is not None and val_max_prompts < 1):
            raise ValueError(
                f"need val_batch_size >= 1, val_num_samples >= 0 and val_max_prompts >= 1 or None; got "
                f"{val_batch_size}, {val_num_samples}, {val_max_prompts}"
            )
        if not val_greedy and val_num_samples == 0:
            raise ValueError("validation with val_greedy=False and val_num_samples=0 would generate nothing")
        self.prompt_template = prompt_template
        self.use_chat_template = use_chat_template
        self.dynamic_sampling = dynamic_sampling
        self.max_extra_rounds = max_extra_rounds
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
        if self.use_chat_template and self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
            )
        return self.prompt_template.format(question=question)

    def setup(self, stage: str) -> None:
        if not self.tokenizer_name:
            raise ValueError("no tokenizer given: set data.tokenizer (the CLI links model.model_name_or_path)")
        self.tokenizer = load_tokenizer(self.tokenizer_name)
        _ = self.prompts_per_rank  # validates divisibility early
        self.max_prompt_tokens = self._context_length() - self.sampler.max_new_tokens
        if self.max_prompt_tokens < 1:
            raise ValueError(
                f"max_new_tokens={self.sampler.max_new_tokens} leaves no room for a prompt in the model's "
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
        table = table.map(lambda row: {"prompt": self.format_prompt(row["question"])})
        lengths = [len(ids) for ids in self.tokenizer(list(table["prompt"]), add_special_tokens=False)["input_ids"]]
        longest = max(range(len(lengths)), key=lengths.__getitem__)
        if lengths[longest] > self.max_prompt_tokens:
            raise ValueError(
                f"prompt {table[longest]['id']!r} has {lengths[longest]} tokens, more than the model's context "
                f"minus the completion budget ({self.max_prompt_tokens} = context - max_new_tokens "
                f"{self.sampler.max_new_tokens}); shorten it, filter the data or lower max_new_tokens"
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

    def _extra_prompts(self, device: torch.device) -> dict[str, Any]:
        """More prompts for dynamic sampling, from a second permutation (seed + 1), resumable."""
        table = self.datasets["train"]
        rows = batch_indices(
            len(table), self.extra_batches_consumed, self.seed + 1_000_000, self.rank, self.world_size, self.prompts_per_rank
        )
        self.extra_batches_consumed += 1
        batch = self.collate([table[i] for i in rows])
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

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

    def make_eval_batch(self, batch: dict[str, Any]) -> EvalBatch:
        """Greedy and sampled completions of held-out prompts, judged by the correctness reward."""
        judge = self.composer.correctness
        if judge is None:
            raise ValueError(
                "validation needs a correctness reward (one with is_correctness, e.g. ExactInteger or "
                f"MathReward) among data.rewards; got {[f.name for f in self.composer.functions]}"
            )
        policy = self.trainer.lightning_module.policy
        with gathered_for_generation(policy):
            return evaluate_batch(
                self.sampler, policy, batch, self.tokenizer, eos_token_ids(policy, self.tokenizer), judge,
                self.val_num_samples, self.val_greedy, self.seed,
            )

    def _sampling_seed(self) -> int:
        return (self.seed * 1_000_003 + self.rank * 7_919 + self.rollouts_sampled * 104_729) % (2**63 - 1)

    def make_rollout(self, batch: dict[str, Any]) -> Rollout:
        """Sample G completions per prompt with the live policy and score them (DAPO: and filter)."""
        rollout = self.sample_and_score(batch)
        if not self.dynamic_sampling:
            return rollout
        return self._fill_with_informative_groups(rollout, batch["input_ids"].device)

    def sample_and_score(self, batch: dict[str, Any]) -> Rollout:
        policy = self.trainer.lightning_module.policy
        eos_ids = eos_token_ids(policy, self.tokenizer)
        devices = [batch["input_ids"].device] if batch["input_ids"].is_cuda else []
        start = time.perf_counter()
        with torch.random.fork_rng(devices=devices), gathered_for_generation(policy):
            torch.manual_seed(self._sampling_seed())
            sequences, completion_mask, truncated = self.sampler.sample(
                policy, batch["input_ids"], batch["attention_mask"], eos_ids, self.tokenizer.pad_token_id
            )
        generation_s = time.perf_counter() - start
        self.rollouts_sampled += 1
        return self.score(batch, sequences, completion_mask, truncated, generation_s)

    def _fill_with_informative_groups(self, first: Rollout, device: torch.device) -> Rollout:
        """DAPO dynamic sampling: keep groups with mixed outcomes; sample more prompts until full.

        Every rank samples the same number of rounds (generation may hold collectives), so the
        decision to go on is taken over all ranks.
        """
        wanted = first.num_groups
        rollouts = [first]
        picks = [(0, g) for g in _informative_groups(first)]
        first_kept = len(picks)
        rounds = 0
        while rounds < self.max_extra_rounds and self._any_rank_short(len(picks) < wanted, device):
            rollouts.append(self.sample_and_score(self._extra_prompts(device)))
            picks += [(len(rollouts) - 1, g) for g in _informative_groups(rollouts[-1])]
            rounds += 1
        kept = min(len(picks), wanted)
        picks = picks[:wanted]
        fillers = [(0, g) for g in range(wanted) if (0, g) not in picks][: wanted - kept]
        rollout = gather_groups(rollouts, picks + fillers, self.tokenizer.pad_token_id)
        g = rollout.group_size
        rollout.valid = (torch.arange(wanted * g, device=device) < kept * g)
        rollout.stats.update(
            {
                "sampling/kept_group_frac": kept / wanted,
                "sampling/informative_frac_first_round": first_kept / wanted,
                "sampling/extra_rounds": float(rounds),
            }
        )
        if first.correct is not None:  # the kept groups are mixed ones only: not the policy's accuracy
            rollout.stats["sampling/first_round_accuracy"] = float(first.correct.float().mean())
        return rollout

    def _any_rank_short(self, short: bool, device: torch.device) -> bool:
        flag = torch.tensor(float(short), device=device)
        if self.trainer is not None and self.trainer.world_size > 1:
            flag = self.trainer.strategy.reduce(flag, reduce_op="max")
        return bool(flag.item())

    def score(
        self,
        batch: dict[str, Any],
        sequences: torch.Tensor,  # [N, Tp + Tc]
        completion_mask: torch.Tensor,  # [N, Tc]
        truncated: torch.Tensor,  # [N]
        generation_s: float,
    ) -> Rollout:
        g = self.sampler.group_size
        prompt_length = batch["input_ids"].shape[1]
        completion_ids = sequences[:, prompt_length:]  # [N, Tc]
        lengths = completion_mask.sum(dim=1)  # [N]
        # Decode only the loss tokens, without special tokens (EOS).
        texts = self.tokenizer.batch_decode(
            [row[: int(n)] for row, n in zip(completion_ids.tolist(), lengths.tolist())], skip_special_tokens=True
        )
        n = sequences.shape[0]
        reward_batch = RewardBatch(
            prompts=[p for p in batch["prompt"] for _ in range(g)],
            completions=texts,
            golds=[a for a in batch["answer"] for _ in range(g)],
            completion_ids=[f"{pid}/{k}" for pid in batch["id"] for k in range(g)],
            group_ids=[i // g for i in range(n)],
            lengths=[int(x) for x in lengths.tolist()],
            truncated=[bool(x) for x in truncated.tolist()],
            max_new_tokens=self.sampler.max_new_tokens,
            metadata=[{} for _ in range(n)],
        )
        start = time.perf_counter()
        total, components = self.composer(reward_batch)
        stats = {"time/generation_s": generation_s, "time/reward_s": time.perf_counter() - start}
        for fn in self.composer.functions:
            stats.update({f"reward/{key}": value for key, value in fn.counters().items()})
        stats.update({f"reward/{name}_errors": float(c) for name, c in self.composer.error_counts.items() if c})
        device = sequences.device
        correctness = self.composer.correctness
        correct, answers = None, []
        if correctness is not None:
            correct = torch.tensor([v == correctness.correct_value for v in components[correctness.name]], device=device)
            answers = [correctness.extract(t, truncated=f) for t, f in zip(texts, reward_batch.truncated)]
        prompt_mask = batch["attention_mask"].repeat_interleave(g, dim=0)  # [N, Tp]
        return Rollout(
            input_ids=sequences,
            attention_mask=torch.cat([prompt_mask, completion_mask.to(prompt_mask.dtype)], dim=1),
            completion_mask=completion_mask,
            truncated=truncated,
            rewards=torch.tensor(total, device=device, dtype=torch.float32),
            reward_components={k: torch.tensor(v, device=device, dtype=torch.float32) for k, v in components.items()},
            group_ids=torch.arange(n, device=device) // g,
            group_size=g,
            prompt_length=prompt_length,
            temperature=self.sampler.temperature,
            max_new_tokens=self.sampler.max_new_tokens,
            correct=correct,
            prompts=list(batch["prompt"]),
            completions=texts,
            answers=answers,
            golds=list(batch["answer"]),
            stats=stats,
        )

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


def _informative_groups(rollout: Rollout) -> list[int]:
    """Groups whose outcomes differ (correctness if known, else total reward): DAPO keeps these."""
    outcome = (rollout.correct if rollout.correct is not None else rollout.rewards).float()
    grouped = outcome.view(-1, rollout.group_size)  # [P, G]
    mixed = grouped.max(dim=1).values > grouped.min(dim=1).values  # [P]
    return mixed.nonzero().flatten().tolist()
