"""RolloutDataModule: prompts → on-device groups of episodes → scored :class:`Rollout`.

The data module loads and formats prompts (``source``, ``prompt``), holds the held-out settings
(``validation``) and the prompt stream's position; everything from prompts to a ``Rollout`` is the
:class:`~lightning_grpo.rollout_engine.RolloutEngine`'s (``rollout``: sampler, environment, rewards,
dynamic sampling). One rollout, top-down:

1. the loader yields P prompts per rank (tokenised, left-padded, with their source rows' fields);
2. ``on_after_batch_transfer`` (already on the device) hands them to ``rollout.collect`` with the live
   policy and an iterator of further prompt batches (for dynamic sampling);
3. the engine samples G episodes per prompt, scores them and returns the ``Rollout``, which
   ``training_step`` receives.

Prompts come from a :class:`~lightning_grpo.prompt_stream.PromptStream` whose position is part of the
data module's state (with the engine's sampling counter), so a resumed run continues with the same
prompts and draws the same completions. Validation batches go through ``rollout.evaluate`` (greedy,
and ``validation.num_samples`` samples per prompt) and become an :class:`~lightning_grpo.evaluation.EvalBatch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader
from transformers import AutoConfig, PreTrainedTokenizerBase

from lightning_grpo.models import load_tokenizer
from lightning_grpo.prompt_format import (
    PromptFormat,
    PromptFormatError,
    check_conversation_options,
    fit_prompts,
    is_conversation,
    left_pad,
    render_prompt,
)
from lightning_grpo.prompt_stream import PromptStream, batch_indices
from lightning_grpo.rollout import PROMPT_FIELDS
from lightning_grpo.rollout_engine import RolloutEngine
from lightning_grpo.sources import BadRowError, PromptSource, Split

__all__ = ["PromptFormat", "RolloutDataModule", "Validation"]
NAMED_ROWS = 3  # rows a message about several prompts names before "and N more"


@dataclass(frozen=True)
class Validation:
    """Held-out evaluation (``data.validation``).

    Args:
        source: held-out prompts (default: the ``validation`` split of ``data.source``).
        batch_size: held-out prompts per validation batch and rank.
        num_samples: sampled episodes per held-out prompt (k of pass@k and maj@k; 0: none).
        greedy: also decode each held-out prompt greedily (greedy accuracy).
        max_prompts: evaluate only the first this many held-out prompts (None: all).
    """

    source: PromptSource | None = None
    batch_size: int = 32
    num_samples: int = 4
    greedy: bool = True
    max_prompts: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_samples < 0 or (self.max_prompts is not None and self.max_prompts < 1):
            raise ValueError(
                f"need data.validation.batch_size >= 1, num_samples >= 0 and max_prompts >= 1 or None; got "
                f"{self.batch_size}, {self.num_samples}, {self.max_prompts}"
            )
        if not self.greedy and self.num_samples == 0:
            raise ValueError("validation with greedy=False and num_samples=0 would generate nothing")


class RolloutDataModule(LightningDataModule):
    def __init__(
        self,
        source: PromptSource | None = None,
        tokenizer: str = "",
        prompts_per_step: int = 4,
        prompt: PromptFormat = PromptFormat(),
        rollout: RolloutEngine | None = None,
        validation: Validation = Validation(),
        seed: int = 0,
    ) -> None:
        """
        Args:
            source: where prompts and gold answers come from (required: e.g. ``JsonlProblems``, ``GSM8K``,
                ``MATH``; the demo's ``lightning_grpo.demo.arithmetic.Arithmetic``).
            tokenizer: tokenizer path or name; the CLI links it to ``model.model_name_or_path``.
            prompts_per_step: prompts per rollout batch over all ranks; each rank samples
                ``prompts_per_step / world_size`` of them (P), so it must divide evenly.
            prompt: how a question becomes a prompt (:class:`PromptFormat`).
            rollout: prompts → scored rollout (:class:`RolloutEngine`: ``group_size``, ``sampling``,
                ``sampler``, ``environment``, ``rewards``, ``dynamic_sampling``).
            validation: held-out evaluation (:class:`Validation`).
            seed: base seed of the prompt order and the sampler.
        """
        super().__init__()
        if prompts_per_step < 1:
            raise ValueError(f"prompts_per_step must be >= 1, got {prompts_per_step}")
        self.source = source
        self.tokenizer_name = tokenizer
        self.prompts_per_step = prompts_per_step
        self.prompt = prompt
        if rollout is None:
            raise ValueError("no data.rollout: it needs at least its rewards (data.rollout.rewards: [MathReward])")
        self.rollout = rollout
        self.validation = validation
        self.seed = seed
        self.batches_consumed = 0  # training prompt batches turned into rollouts (the stream's position)
        self.extra_batches_consumed = 0  # dynamic sampling's extra prompt batches
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.datasets: dict[str, Any] = {}

    @property
    def group_size(self) -> int:
        return self.rollout.group_size

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

    def format_prompt(self, question: str | list[dict[str, Any]]) -> str:
        """The prompt text of a string question or a conversation (see :mod:`lightning_grpo.prompt_format`)."""
        assert self.tokenizer is not None
        if is_conversation(question):
            check_conversation_options(self.prompt, self.tokenizer, self.tokenizer_name, "this question")
        return render_prompt(self.prompt, self.tokenizer, question, self.rollout.environment.chat_tools())

    def setup(self, stage: str) -> None:
        if self.source is None:
            raise ValueError(
                "no data.source: name where prompts come from, e.g. lightning_grpo.sources.JsonlProblems "
                "(train_path: problems.jsonl), lightning_grpo.sources.GSM8K, or the demo's "
                "lightning_grpo.demo.arithmetic.Arithmetic"
            )
        if not self.tokenizer_name:
            raise ValueError("no tokenizer given: set data.tokenizer (the CLI links model.model_name_or_path)")
        self.tokenizer = load_tokenizer(self.tokenizer_name)
        self._attach_engine()
        self.rollout.setup()  # e.g. MathReward's verifier worker pool, before the first rollout instead of in it
        _ = self.prompts_per_rank  # validates divisibility early
        budget = self.rollout.max_episode_tokens
        context = self._context_length()
        room = context - budget
        name = "max_new_tokens" if self.rollout.environment.max_turns == 1 else "max_episode_tokens"
        if room < 1:
            raise ValueError(f"data.rollout.{name}={budget} leaves no room for a prompt in the model's context of {context} tokens")
        if self.prompt.max_length is not None and self.prompt.max_length > room:
            raise ValueError(
                f"data.prompt.max_length={self.prompt.max_length} is more than the model's context minus the completion "
                f"budget ({room} = {context} - data.rollout.{name}={budget}): lower it or the budget"
            )
        self.max_prompt_tokens = self.prompt.max_length if self.prompt.max_length is not None else room
        self._limit_reason = (
            f"data.prompt.max_length={self.max_prompt_tokens}" if self.prompt.max_length is not None
            else f"{room} = the model's context of {context} - data.rollout.{name}={budget}"
        )
        if stage == "fit" and "train" not in self.datasets:
            self.datasets["train"] = self._prepare(self.source.load("train"), self.source, "train")
        if stage in ("fit", "validate") and "validation" not in self.datasets:
            self.datasets["validation"] = self._held_out(required=stage == "validate")

    def _attach_engine(self) -> None:
        trainer = self.trainer
        precision = trainer.precision_plugin.forward_context if trainer is not None else None
        reduce_max = None
        if trainer is not None and trainer.world_size > 1:
            device = trainer.strategy.root_device
            reduce_max = lambda flag: trainer.strategy.reduce(flag.to(device), reduce_op="max")  # noqa: E731
        self.rollout.attach(self.tokenizer, self.seed, self.rank, precision, reduce_max)

    def _context_length(self) -> int:
        config = AutoConfig.from_pretrained(self.tokenizer_name)
        return int(getattr(config, "max_position_embeddings", None) or self.tokenizer.model_max_length)

    def _prepare(self, table: Any, source: PromptSource, split: Split) -> Any:
        """The source's table with the columns ``prompt`` (text) and ``prompt_token_ids`` (its token ids), after
        the length policy (``data.prompt.overlong``); row ``i`` of ``table`` is row ``i`` of ``source``'s
        ``split`` (messages name it with :meth:`PromptSource.row_place`)."""
        # Columns from lists, not ``table.map(fn)``: ``fn`` would close over this module (tokenizer and
        # all), which ``datasets`` cannot fingerprint, so every run warned and drew a progress bar.
        questions = list(table["question"])
        conversation = next((i for i, q in enumerate(questions) if is_conversation(q)), None)
        if conversation is not None:
            place = source.row_place(split, conversation)
            check_conversation_options(self.prompt, self.tokenizer, self.tokenizer_name, f"{place} (and any like it)")
        tools = self.rollout.environment.chat_tools()  # offered to the model by its own template
        prompts = []
        for index, question in enumerate(questions):
            try:
                prompts.append(render_prompt(self.prompt, self.tokenizer, question, tools))
            except ValueError as error:
                raise BadRowError(f"{source.row_place(split, index)}: {error}") from error
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]  # P lists of token ids
        fitted = fit_prompts(ids, self.max_prompt_tokens, self.prompt.overlong)
        if fitted.overlong:
            self._report_overlong(table, source, split, fitted.overlong, fitted.lengths)
            if len(fitted.kept) == 0:
                raise PromptFormatError(
                    f"all {len(table)} {split} prompts are longer than {self.max_prompt_tokens} tokens "
                    f"({self._limit_reason}), so data.prompt.overlong=drop left none"
                )
        if self.prompt.overlong == "truncate_left":
            prompts = [self.tokenizer.decode(row, skip_special_tokens=False) if len(row) < fitted.lengths[i] else prompts[i]
                       for i, row in enumerate(fitted.ids)]
        else:
            prompts = [prompts[i] for i in fitted.kept]
        if len(fitted.kept) < len(table):
            table = table.select(fitted.kept)
        table = table.remove_columns([c for c in ("prompt", "prompt_token_ids") if c in table.column_names])
        return table.add_column("prompt", prompts).add_column("prompt_token_ids", fitted.ids)

    def _report_overlong(self, table: Any, source: PromptSource, split: Split, overlong: list[int], lengths: list[int]) -> None:
        """Raise (``overlong: error``) or say in one line what the policy did to the prompts over the limit."""
        named = "; ".join(
            f"{source.row_place(split, i)} (id {table[i]['id']!r}, {lengths[i]} tokens)" for i in overlong[:NAMED_ROWS]
        )
        more = f"; and {len(overlong) - NAMED_ROWS} more" if len(overlong) > NAMED_ROWS else ""
        limit = f"{self.max_prompt_tokens} tokens ({self._limit_reason})"
        if self.prompt.overlong == "error":
            first = overlong[0]
            raise PromptFormatError(
                f"{source.row_place(split, first)}: prompt {table[first]['id']!r} has {lengths[first]} tokens, more "
                f"than {limit}{f'; {len(overlong) - 1} more {split} prompts too' if len(overlong) > 1 else ''}. "
                "Set data.prompt.overlong=drop to skip such prompts or truncate_left to keep their last tokens, "
                "or set data.prompt.max_length, shorten or filter the data, or lower the completion budget"
            )
        done = "dropped" if self.prompt.overlong == "drop" else "cut to their last tokens"
        rank_zero_info(
            f"data.prompt.overlong={self.prompt.overlong}: {len(overlong)} of {len(table)} {split} prompts are longer "
            f"than {limit} and were {done}: {named}{more}"
        )

    def _held_out(self, required: bool) -> Any | None:
        """The held-out prompts, or None (with a warning) when the source has none and none is required."""
        source = self.validation.source if self.validation.source is not None else self.source
        try:
            table = source.load("validation")
            if len(table) == 0:
                raise ValueError(f"the held-out prompts of {type(source).__name__} are empty")
        except BadRowError:
            raise  # bad held-out data stops the run as bad training data does, never "no validation"
        except ValueError as error:
            if required or self.validation.source is not None:
                raise ValueError(f"no held-out prompts for validation: {error}; set data.validation.source") from error
            rank_zero_warn(f"no validation during fit: {error}")
            return None
        if self.validation.max_prompts is not None:
            table = table.select(range(min(self.validation.max_prompts, len(table))))  # a prefix: row i stays row i
        return self._prepare(table, source, "validation")

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
        return DataLoader(table, batch_size=self.validation.batch_size, shuffle=False, collate_fn=self.collate)

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        input_ids, attention_mask = left_pad([r["prompt_token_ids"] for r in rows], self.tokenizer.pad_token_id)
        return {
            "input_ids": input_ids,  # [P, Tp]
            "attention_mask": attention_mask,  # [P, Tp]
            "prompt": [r["prompt"] for r in rows],
            "answer": [r["answer"] for r in rows],
            "id": [r["id"] for r in rows],
            "metadata": [{k: v for k, v in r.items() if k not in PROMPT_FIELDS and k != "prompt_token_ids"} for r in rows],  # for rewards
        }

    # ---- rollouts ------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is None:
            return batch
        policy = self.trainer.lightning_module.policy
        if self.trainer.training:
            self.batches_consumed += 1
            return self.rollout.collect(policy, batch, self._more_prompts(batch["input_ids"].device))
        if self.trainer.validating or self.trainer.sanity_checking:
            return self.rollout.evaluate(policy, batch, self.validation.greedy, self.validation.num_samples)
        return batch

    def _more_prompts(self, device: torch.device) -> Iterator[dict[str, Any]]:
        """Further prompt batches for dynamic sampling, from a second permutation (seed + 1), resumable:
        a batch counts as consumed only when the engine pulls it."""
        table = self.datasets["train"]
        while True:
            rows = batch_indices(
                len(table), self.extra_batches_consumed, self.seed + 1_000_000, self.rank, self.world_size,
                self.prompts_per_rank,
            )
            self.extra_batches_consumed += 1
            batch = self.collate([table[i] for i in rows])
            yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # ---- exact resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **self.rollout.state_dict(),
            "batches_consumed": self.batches_consumed,
            "extra_batches_consumed": self.extra_batches_consumed,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rollout.load_state_dict(state_dict)
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

