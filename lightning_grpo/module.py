"""GRPOModule: the policy, a frozen reference (only when β > 0), and the update loop.

One ``training_step`` receives one :class:`Rollout` (this rank's P prompts × G completions) and makes
``updates_per_rollout × epochs`` optimizer steps from it (docs/algorithms.md §8):

1. advantages from rewards gathered over all ranks (so ``scale='batch'`` sees the whole batch);
2. logp_old once, with the training forward, if the rollout feeds more than one update (else ρ ≡ 1);
   logp_ref once if β > 0;
3. per mini-batch: normalisers over the mini-batch on all ranks, then per micro-batch one chunked
   forward (log-probs and entropy together), the objective, backward; then clip, step, schedule.
   A mini-batch with no loss token on any rank (all its groups dropped by AGPO's ``drop`` or left
   over by dynamic sampling) makes no step: AdamW would otherwise move the weights on momentum alone.

The normalisers span one optimizer step's mini-batch (all its micro-batches, all ranks), as the
mini-batches of PPO-style trainers do: with one update per rollout that is the whole rollout batch
(docs/algorithms.md §1); with U updates each step's loss keeps the scale of a one-update run, so a
learning rate means the same whatever U is.

``validation_step`` receives an :class:`~lightning_grpo.evaluation.EvalBatch` (held-out prompts,
greedy and k samples) and feeds an :class:`~lightning_grpo.metrics.EvalAccumulator`; the epoch's
end logs ``val/accuracy``, ``val/pass@k``, ``val/maj@k``, lengths and truncation, counted over all
ranks with each prompt once. Checkpoints also carry every RNG state, for an exact resume.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from peft import PeftConfig
from torch import Tensor

from lightning_grpo.advantages import AdvantageContext, AdvantageEstimator, GroupNormalized
from lightning_grpo.completion_log import CompletionLog, CompletionTable
from lightning_grpo.evaluation import EvalBatch
from lightning_grpo.logprobs import completion_logprobs
from lightning_grpo.metrics import EvalAccumulator
from lightning_grpo.models import enable_activation_checkpointing, load_causal_lm
from lightning_grpo.module_settings import Logging, Optimization, UpdateLoop
from lightning_grpo.objectives.base import Normalizers, Objective, ObjectiveInputs
from lightning_grpo.objectives.grpo import GRPO
from lightning_grpo.peft_support import adapters_disabled, apply_adapter, trainable_parameter_names
from lightning_grpo.rng import get_rng_states, set_rng_states
from lightning_grpo.rollout import Rollout
from lightning_grpo.sharding import fully_shard_causal_lm
from lightning_grpo.strategies import strategy_mp_policy


@dataclass
class MinibatchResult:
    metrics: dict[str, Tensor]  # objective metrics and loss, summed over micro-batches (detached)
    entropy_sum: Tensor  # Σ mask · entropy over the mini-batch
    logp_mismatch: Tensor  # max |logp − logp_old| over loss tokens (0 when on-policy)


def minibatch_backward(
    policy: torch.nn.Module,
    objective: Objective,
    rollout: Rollout,
    micro_batches: list[Tensor],
    normalizers: Normalizers,
    mask: Tensor,  # [N, Tc] loss mask of the whole rollout
    advantages: Tensor,  # [N]
    old_logp: Tensor | None,  # [N, Tc] or None when on-policy
    ref_logp: Tensor | None,  # [N, Tc] or None when β = 0
    token_weights: Tensor | None,  # [N, Tc]
    backward: Callable[[Tensor], None],
    chunk_size: int = 64,
) -> MinibatchResult:
    """Accumulate one mini-batch's gradient, one forward/backward per micro-batch (row indices).

    The normalisers span the whole mini-batch on all ranks, so the accumulated gradient does not
    depend on how the rows are split; nothing graph-connected outlives its micro-batch.
    """
    sums: dict[str, Tensor] = {}
    entropy_sum = torch.zeros((), device=mask.device)
    mismatch = torch.zeros((), device=mask.device)
    for rows in micro_batches:
        logp, entropy = completion_logprobs(
            policy,
            rollout.input_ids[rows],
            rollout.attention_mask[rows],
            rollout.prompt_length,
            temperature=rollout.temperature,
            chunk_size=chunk_size,
            group_size=rollout.group_size,  # whole groups: each prompt runs once for its G completions
            entropy_grad=objective.differentiable_entropy,
        )  # [b, Tc] each
        rows_mask = mask[rows]  # [b, Tc]
        old = old_logp[rows] if old_logp is not None else logp.detach()
        if old_logp is not None:
            mismatch = torch.maximum(mismatch, ((logp.detach() - old).abs() * rows_mask).max())
        loss, metrics = objective(
            ObjectiveInputs(
                logp=logp,
                old_logp=old,
                advantages=advantages[rows],
                mask=rows_mask,
                normalizers=normalizers,
                ref_logp=ref_logp[rows] if ref_logp is not None else None,
                entropy=entropy,
                completion_ids=rollout.completion_ids[rows],
                group_ids=rollout.group_ids[rows],
                token_weights=token_weights[rows] if token_weights is not None else None,
            )
        )
        backward(loss)
        entropy_sum = entropy_sum + (entropy.detach() * rows_mask).sum()
        for key, value in {"loss": loss, **metrics}.items():
            sums[key] = sums.get(key, 0.0) + value.detach()
    return MinibatchResult(metrics=sums, entropy_sum=entropy_sum, logp_mismatch=mismatch)


class GRPOModule(LightningModule):
    def __init__(
        self,
        model_name_or_path: str,
        objective: Objective | None = None,
        advantage: AdvantageEstimator | None = None,
        reference_model_name_or_path: str | None = None,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        optimizer: Optimization = Optimization(),
        update: UpdateLoop = UpdateLoop(),
        logging: Logging = Logging(),
        gradient_checkpointing: bool = False,
        peft: PeftConfig | None = None,
    ) -> None:
        """
        Args:
            model_name_or_path: policy checkpoint, loaded with ``AutoModelForCausalLM.from_pretrained``.
            objective: the loss (default ``GRPO()``); swap with ``--model.objective=DAPO`` and the like.
            advantage: the advantage estimator (default ``GroupNormalized()``, the group z-score).
            reference_model_name_or_path: frozen reference for the KL term (default: the policy's
                path). Loaded only when the objective's β > 0.
            dtype: parameter dtype of policy and reference.
            optimizer: AdamW, warm-up and schedule, gradient clipping (:class:`Optimization`).
            update: mini-batches, epochs, micro-batches, truncation masking, non-finite policy (:class:`UpdateLoop`).
            logging: example completions in the logs (:class:`Logging`).
            gradient_checkpointing: recompute the policy's decoder-layer activations in backward
                (less memory, about one more forward of compute); generation runs in eval mode with
                the KV cache, where it is off.
            peft: an adapter config, e.g. ``peft.LoraConfig`` (in YAML ``class_path: peft.LoraConfig`` with
                ``init_args`` r, lora_alpha, target_modules, lora_dropout): only the adapter trains, and the
                KL reference is the policy with its adapters disabled unless
                ``reference_model_name_or_path`` names another model (see ``peft_support.py``).
        """
        super().__init__()
        self.optimization, self.update, self.logging_settings = optimizer, update, logging
        self.save_hyperparameters(ignore=["objective", "advantage", "peft", "optimizer", "update", "logging"])  # objects: not in weights-only checkpoints
        for name, group in (("optimizer", optimizer), ("update", update), ("logging", logging)):
            self.hparams[name] = asdict(group)  # plain values, for the logger's hyperparameters
        self.peft_config = peft
        self.automatic_optimization = False
        self.strict_loading = False  # the reference model is rebuilt from its path, not checkpointed
        self.objective = objective if objective is not None else GRPO()
        self.advantage = advantage if advantage is not None else GroupNormalized()
        self.policy: torch.nn.Module | None = None
        self.reference: torch.nn.Module | None = None
        self.skipped_updates = 0
        self.consecutive_skips = 0  # skipped updates since the last applied one
        self.val_metric: EvalAccumulator | None = None  # built at the first validation batch (k = its n)
        self.checkpoint_step = 0  # optimizer steps of the loaded checkpoint (0: none loaded)
        self.completion_log = CompletionLog()  # example completions to every logger that takes a table

    def setup(self, stage: str) -> None:
        group_size = getattr(getattr(self.trainer, "datamodule", None), "group_size", None)
        minimum = getattr(self.advantage, "min_group_size", 2)
        if stage == "fit" and group_size is not None and group_size < minimum:
            raise ValueError(
                f"data.rollout.group_size={group_size} is too small for {type(self.advantage).__name__}: it compares the "
                f"completions of a group and needs group_size >= {minimum}"
            )
        if stage == "fit" and self.update.max_rollouts is not None and self._trainer is not None:
            self._apply_rollout_budget(self.trainer)

    def _apply_rollout_budget(self, trainer: Any) -> None:
        """``model.update.max_rollouts`` sets ``trainer.max_steps`` (optimizer steps, what the LR schedule and the
        progress bar count); ``training_step`` also stops the run after that many rollouts, since a mini-batch
        without loss tokens or a skipped update makes no optimizer step."""
        loop = self.update
        budget = loop.max_rollouts * loop.steps_per_rollout
        previous = trainer.max_steps
        trainer.fit_loop.epoch_loop.max_steps = budget
        if previous != budget:
            was = "unset" if previous < 0 else str(previous)
            rank_zero_info(
                f"model.update.max_rollouts={loop.max_rollouts} x {loop.steps_per_rollout} optimizer step(s) per rollout "
                f"(updates_per_rollout x epochs): trainer.max_steps={budget} (was {was})"
            )

    # ---- models ---------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.policy is not None:
            return
        hp = self.hparams
        self.policy = load_causal_lm(hp.model_name_or_path, hp.dtype, role="policy").train()
        if hp.gradient_checkpointing:
            enable_activation_checkpointing(self.policy)
        adapter = self.peft_config
        if adapter is not None:
            self.policy = apply_adapter(self.policy, adapter).train()
        # With an adapter and no other reference named, the reference is the policy with adapters off.
        separate_reference = adapter is None or hp.reference_model_name_or_path not in (None, hp.model_name_or_path)
        if self.objective.needs_reference and separate_reference:
            self.reference = load_causal_lm(
                hp.reference_model_name_or_path or hp.model_name_or_path,
                hp.dtype,
                role=f"reference (needed because the objective's beta = {self.objective.beta} > 0)",
            )
            self.reference.eval().requires_grad_(False)
        mesh = self.device_mesh  # set by ModelParallelStrategy (FSDP2), None otherwise
        if mesh is not None:
            dp_mesh = mesh["data_parallel"] if mesh.mesh_dim_names and "data_parallel" in mesh.mesh_dim_names else mesh
            mp_policy = strategy_mp_policy(self.trainer.strategy) if self._trainer is not None else None
            for model in (self.policy, self.reference):
                if model is not None:
                    fully_shard_causal_lm(model, dp_mesh, mp_policy=mp_policy)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seed the update's randomness (dropout, e.g. LoRA's ``lora_dropout``) from the run's seed
        (``seed_everything``), the step and the rank: a resumed run then draws the same masks, although
        restoring the data loader consumes random numbers that an uninterrupted run drew at its start.
        (Sampling seeds its own generator.)"""
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        torch.manual_seed((seed * 1_000_003 + self.global_step * 7_919 + self.global_rank) % (2**63 - 1))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["skipped_updates"] = self.skipped_updates
        checkpoint["rng_states"] = get_rng_states()
        checkpoint["objective_state"] = self.objective.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_updates = int(checkpoint.get("skipped_updates", 0))
        self.checkpoint_step = int(checkpoint.get("global_step", 0))  # what `validate --ckpt_path` reports
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])
        self.objective.load_state_dict(checkpoint.get("objective_state", {}))

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Trainable state only: no reference model; with an adapter, not the frozen base weights either
        (both are reloaded from their paths, so a LoRA checkpoint holds the adapter and its optimizer state)."""
        state = super().state_dict(*args, **kwargs)
        state = {k: v for k, v in state.items() if not k.startswith("reference.")}
        if self.peft_config is not None and self.policy is not None:
            trainable = {f"policy.{name}" for name in trainable_parameter_names(self.policy)}
            state = {k: v for k, v in state.items() if not k.startswith("policy.") or k in trainable}
        return state

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Refuses a checkpoint that lacks a trainable policy weight (loading is not strict, since the
        reference and an adapter's base weights are not saved): e.g. a LoRA checkpoint without the same
        ``model.peft``, or a full one into a LoRA run, would otherwise leave the weights as loaded."""
        if self.policy is not None:
            missing = sorted(f"policy.{n}" for n in trainable_parameter_names(self.policy) if f"policy.{n}" not in state_dict)
            if missing:
                raise KeyError(
                    f"the checkpoint holds no value for {len(missing)} trainable policy parameter(s), e.g. "
                    f"{missing[0]!r}: was it saved with the same model and model.peft?"
                )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        opt = self.optimization
        optimizer = torch.optim.AdamW(
            [p for p in self.policy.parameters() if p.requires_grad],
            lr=opt.learning_rate,
            weight_decay=opt.weight_decay,
            betas=tuple(opt.adam_betas),
        )
        total = self.trainer.max_steps if self.trainer is not None else -1
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor_fn(total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _lr_factor_fn(self, total_steps: int) -> Any:
        opt = self.optimization

        def factor(step: int) -> float:
            if step < opt.warmup_steps:
                return (step + 1) / (opt.warmup_steps + 1)
            if opt.lr_schedule == "constant" or total_steps <= opt.warmup_steps:
                return 1.0
            progress = min(1.0, (step - opt.warmup_steps) / (total_steps - opt.warmup_steps))
            shape = 0.5 * (1 + math.cos(math.pi * progress)) if opt.lr_schedule == "cosine" else 1 - progress
            return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * shape

        return factor

    # ---- helpers --------------------------------------------------------------------------------
    def _all_sum(self, value: Tensor) -> Tensor:
        if dist.is_available() and dist.is_initialized() and self.trainer.world_size > 1:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def _global_mean_std(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and unbiased std of ``values`` [N] over all ranks (sums, not means of means)."""
        v = values.double()
        total, squares, count = self._all_sum(torch.stack([v.sum(), v.square().sum(), torch.tensor(float(v.numel()), dtype=torch.float64, device=v.device)]))
        mean = total / count
        var = (squares - count * mean.square()) / (count - 1) if count > 1 else torch.zeros_like(mean)
        return mean.float(), var.clamp(min=0).sqrt().float()

    def _micro_batches(self, rows: Tensor) -> list[Tensor]:
        size = self.update.micro_batch_size or len(rows)
        return list(rows.split(size))

    @torch.no_grad()
    def _frozen_logprobs(self, model: torch.nn.Module | None, rollout: Rollout) -> Tensor:
        """log-probs [N, Tc] of ``model`` without grad; ``None`` is the adapter-free policy (LoRA's reference)."""
        rows = torch.arange(rollout.input_ids.shape[0], device=rollout.input_ids.device)
        context = adapters_disabled(self.policy) if model is None else contextlib.nullcontext()
        with context:
            parts = [
                completion_logprobs(
                    model if model is not None else self.policy,
                    rollout.input_ids[mb],
                    rollout.attention_mask[mb],
                    rollout.prompt_length,
                    temperature=rollout.temperature,
                    chunk_size=self.update.logp_chunk_size,
                    with_entropy=False,
                    group_size=rollout.group_size,
                )[0]
                for mb in self._micro_batches(rows)
            ]
        return torch.cat(parts)  # [N, Tc]

    def compute_advantages(self, rollout: Rollout) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Advantages [N] and keep mask [N] for this rank, estimated on the groups of all ranks."""
        g = rollout.group_size
        rewards = rollout.rewards.view(-1, g)  # [P, G]
        lengths = rollout.lengths.view(-1, g).float()  # [P, G]
        correct = rollout.correct.view(-1, g).float() if rollout.correct is not None else None
        world = self.trainer.world_size if self.trainer is not None else 1
        if world > 1:
            rewards = self.all_gather(rewards).reshape(-1, g)  # [W·P, G]
            lengths = self.all_gather(lengths).reshape(-1, g)
            correct = self.all_gather(correct).reshape(-1, g) if correct is not None else None
        result = self.advantage(rewards, AdvantageContext(lengths=lengths, correct=correct.bool() if correct is not None else None))
        p = rollout.rewards.shape[0] // g
        start = (self.global_rank * p) if world > 1 else 0
        values = result.values[start : start + p].reshape(-1)  # [N]
        keep = result.keep[start : start + p].reshape(-1)  # [N]
        return values.to(rollout.rewards.device), keep.to(rollout.rewards.device), result.metrics

    # ---- the update -----------------------------------------------------------------------------
    def training_step(self, rollout: Rollout, batch_idx: int) -> None:
        loop = self.update
        start = time.perf_counter()
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        n = rollout.input_ids.shape[0]
        if n % loop.updates_per_rollout:
            raise ValueError(
                f"the rollout's {n} completions per rank do not split into updates_per_rollout="
                f"{loop.updates_per_rollout} equal mini-batches"
            )
        advantages, keep, adv_metrics = self.compute_advantages(rollout)
        mask = rollout.completion_mask.float() * keep.unsqueeze(1)  # [N, Tc]
        if loop.mask_truncated:
            mask = mask * (~rollout.truncated).unsqueeze(1)
        if rollout.valid is not None:
            mask = mask * rollout.valid.unsqueeze(1)
        multi_update = loop.steps_per_rollout > 1
        old_logp = self._frozen_logprobs(self.policy, rollout) if multi_update else None  # [N, Tc]
        ref_logp = self._frozen_logprobs(self.reference, rollout) if self.objective.needs_reference else None
        token_weights = self.objective.rollout_token_weights(
            rollout.completion_ids, mask, advantages, rollout.group_ids
        )  # [N, Tc] or None
        world = self.trainer.world_size
        sums: dict[str, Tensor] = {}
        entropy_sum = torch.zeros((), device=mask.device)
        logp_mismatch = torch.zeros((), device=mask.device)
        grad_norms = []
        empty_minibatches = 0
        mini_size = n // loop.updates_per_rollout
        for epoch in range(loop.epochs):
            for update, mini in enumerate(torch.arange(n, device=mask.device).split(mini_size)):
                if self._max_steps_reached():  # trainer.max_steps counts optimizer steps, also mid-rollout
                    break
                counts = self._all_sum(torch.stack([(mask[mini].sum(1) > 0).sum().float(), mask[mini].sum()]))
                if counts[1].item() == 0:  # equal on every rank, so every rank skips
                    empty_minibatches += 1
                    continue
                step = minibatch_backward(
                    self.policy,
                    self.objective,
                    rollout,
                    self._micro_batches(mini),
                    Normalizers(
                        num_sequences=max(counts[0].item(), 1.0),
                        num_tokens=max(counts[1].item(), 1.0),
                        max_length=float(rollout.max_new_tokens),
                    ),
                    mask,
                    advantages,
                    old_logp,
                    ref_logp,
                    token_weights,
                    # DDP and FSDP average gradients over ranks; the normalisers are already global.
                    backward=lambda loss: self.manual_backward(loss * world),
                    chunk_size=loop.logp_chunk_size,
                )
                if epoch == 0:
                    entropy_sum = entropy_sum + step.entropy_sum
                    if update == 0:
                        logp_mismatch = step.logp_mismatch
                for key, value in step.metrics.items():
                    sums[key] = sums.get(key, 0.0) + value
                grad_norms.append(self._clip_and_step(optimizer, scheduler))
                if self.objective.adaptive_entropy:  # the step's global mean token entropy steers the bonus
                    self.objective.on_optimizer_step((self._all_sum(step.entropy_sum) / counts[1]).item())
        update_s = time.perf_counter() - start
        rollouts = self._rollouts_done()
        if loop.max_rollouts is not None and rollouts >= loop.max_rollouts:
            self.trainer.should_stop = True
        self.log("rollout", float(rollouts), prog_bar=True, logger=False, batch_size=rollout.num_groups)
        adv_metrics = {**adv_metrics, "empty_minibatches": torch.tensor(float(empty_minibatches))}
        self._log_step(rollout, mask, advantages, adv_metrics, sums, entropy_sum, logp_mismatch, grad_norms, update_s)

    def _rollouts_done(self) -> int:
        """Rollouts trained on so far, this one included (Lightning's batch count: restored on resume)."""
        if self._trainer is None:
            return 0
        return int(self._trainer.fit_loop.epoch_loop.batch_progress.total.ready)

    def _max_steps_reached(self) -> bool:
        max_steps = self._trainer.max_steps if self._trainer is not None else -1
        return 0 <= max_steps <= self.global_step

    def _clip_and_step(self, optimizer: Any, scheduler: Any) -> Tensor:
        params = [p for p in self.policy.parameters() if p.grad is not None]
        max_norm = self.optimization.max_grad_norm if self.optimization.max_grad_norm is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(grad_norm, "full_tensor"):  # DTensor under FSDP2
            grad_norm = grad_norm.full_tensor()
        if not torch.isfinite(grad_norm):  # the norm is non-finite iff some gradient is (on every rank)
            if self.update.on_nonfinite == "raise":
                raise FloatingPointError(f"non-finite gradient norm {grad_norm.item()} at step {self.global_step}")
            self.skipped_updates += 1
            self.consecutive_skips += 1
            optimizer.zero_grad(set_to_none=True)
            limit = self.update.max_consecutive_skips
            if limit and self.consecutive_skips >= limit:
                raise FloatingPointError(
                    f"{self.consecutive_skips} updates in a row had a non-finite gradient norm and were skipped "
                    f"(max_consecutive_skips={limit}, at step {self.global_step}): the run is not training. "
                    f"{_last_good_checkpoint(self._trainer)}"
                )
            return grad_norm.detach()
        self.consecutive_skips = 0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        return grad_norm.detach()

    # ---- logging --------------------------------------------------------------------------------
    def _log_step(
        self,
        rollout: Rollout,
        mask: Tensor,
        advantages: Tensor,
        adv_metrics: dict[str, Tensor],
        sums: dict[str, Tensor],
        entropy_sum: Tensor,
        logp_mismatch: Tensor,
        grad_norms: list[Tensor],
        update_s: float,
    ) -> None:
        loop = self.update
        steps = loop.steps_per_rollout
        lengths = rollout.lengths.float()  # [N]
        tokens = self._all_sum(torch.stack([entropy_sum, mask.sum(), lengths.sum()]))
        generation_s = rollout.stats.get("time/generation_s", 0.0)
        scalars: dict[str, Any] = {
            "train/entropy": tokens[0] / tokens[1].clamp(min=1),
            "train/advantage_abs_mean": advantages.abs().mean(),
            "train/grad_norm": torch.stack(grad_norms).mean() if grad_norms else torch.zeros(()),
            "train/skipped_updates": torch.tensor(float(self.skipped_updates)),
            "train/lr": torch.tensor(self.lr_schedulers().get_last_lr()[0]),
            "completions/length_mean": lengths.mean(),
            "completions/truncated_frac": rollout.truncated.float().mean(),
            "time/update_s": torch.tensor(update_s),
            "time/tokens_per_s": tokens[2] / max(generation_s + update_s, 1e-9),
        }
        for name, values in {"total": rollout.rewards, **rollout.reward_components}.items():
            scalars[f"reward/{name}"], scalars[f"reward/{name}_std"] = self._global_mean_std(values)
        for name, value in rollout.stats.items():
            scalars[name] = torch.tensor(float(value))
        if rollout.correct is not None:
            scalars["train/accuracy"] = rollout.correct.float().mean()
        for name, value in adv_metrics.items():
            scalars[f"train/{name}"] = value
        # Objective metrics are shares of each step's value: summed over a step, averaged over steps.
        for name, value in sums.items():
            scalars[f"train/{name}"] = self._all_sum(torch.as_tensor(value, device=mask.device)) / max(len(grad_norms), 1)
        if steps > 1:
            scalars["train/logp_old_mismatch_max"] = logp_mismatch
        device = mask.device
        scalars = {k: torch.as_tensor(v, device=device, dtype=torch.float32) for k, v in scalars.items()}
        # Values already global (all-reduced) are equal on every rank, so the mean over ranks keeps them.
        self.log_dict(scalars, sync_dist=True, batch_size=rollout.num_groups)
        self.log("completions/length_max", lengths.max(), reduce_fx="max", sync_dist=True, batch_size=rollout.num_groups)
        self.log("reward", scalars["reward/total"], prog_bar=True, logger=False, batch_size=rollout.num_groups)
        if "train/accuracy" in scalars:
            self.log("acc", scalars["train/accuracy"], prog_bar=True, logger=False, batch_size=rollout.num_groups)
        self._log_text(rollout)

    # ---- validation -----------------------------------------------------------------------------
    def validation_step(self, batch: EvalBatch, batch_idx: int) -> None:
        if self.val_metric is None:
            n = batch.correct.shape[1]
            ks = sorted({1, n} | {2**i for i in range(1, 10) if 2**i < n}) if n else [1]
            self.val_metric = EvalAccumulator(ks=ks, sync_on_compute=True).to(self.device)
        self.val_metric.update(
            batch.prompt_ids,
            correct=batch.correct,
            lengths=batch.lengths,
            truncated=batch.truncated,
            answers=batch.answers,
            greedy_correct=batch.greedy_correct,
            greedy_lengths=batch.greedy_lengths,
            greedy_truncated=batch.greedy_truncated,
        )
        if batch_idx == 0 and batch.examples:
            self._log_eval_examples(batch)

    def on_validation_epoch_end(self) -> None:
        if self.val_metric is None:
            return
        values = self.val_metric.compute()  # over all ranks, each prompt once
        self.val_metric.reset()
        logged = {f"val/{k}": v.to(self.device) for k, v in values.items()}
        # Outside fit the loops are not restored: the step is the loaded checkpoint's, also on the logger's x axis.
        step = self.global_step if self.trainer.state.fn == "fit" else self.checkpoint_step
        if self.trainer.state.fn != "fit":
            logged["step"] = torch.tensor(float(step), device=self.device)
        # Already global and equal on every rank: no further reduction.
        self.log_dict(logged, sync_dist=False, rank_zero_only=False)
        if not self.trainer.sanity_checking:
            # val/accuracy is the greedy completions' accuracy; pass@k and maj@k are over the sampled ones.
            summary = ", ".join(f"{'greedy accuracy' if k == 'accuracy' else k} {v.item():.4g}" for k, v in values.items())
            rank_zero_info(f"validation at step {step}: {summary}")

    def _log_eval_examples(self, batch: EvalBatch) -> None:
        if self.global_rank != 0 or not self.loggers or self.trainer.sanity_checking:
            return
        rows = [(e["prompt"], e["completion"], str(e["answer"]), e["gold"], str(e["correct"])) for e in batch.examples]
        self.completion_log.write(self.loggers, CompletionTable(
            "validation/greedy_completions", ("prompt", "completion", "extracted", "gold", "correct"),
            rows[: self.logging_settings.num_completions_to_log], self.global_step,
        ))

    def _log_text(self, rollout: Rollout) -> None:
        every = self.logging_settings.log_completions_every_n_steps
        if not every or self.global_rank != 0 or not self.loggers:
            return
        step = self.global_step
        if self._rollouts_done() % every:  # every n-th rollout (not optimizer step)
            return
        g = rollout.group_size
        rows = [
            (rollout.prompts[i // g], rollout.completions[i], str(rollout.answers[i]) if rollout.answers else "",
             rollout.golds[i // g], f"{rollout.rewards[i].item():.3f}")
            for i in range(min(self.logging_settings.num_completions_to_log, len(rollout.completions)))
        ]
        self.completion_log.write(self.loggers, CompletionTable("completions", ("prompt", "completion", "extracted", "gold", "reward"), rows, step))


def _last_good_checkpoint(trainer: Any) -> str:
    """Where a stopped run can resume: its newest periodic checkpoint (skipped updates changed no weight)."""
    from lightning_grpo.checkpoint_paths import newest_run_checkpoint

    newest = newest_run_checkpoint(trainer)
    if newest is None:
        return "This run has saved no checkpoint yet."
    return f"The last good checkpoint is {newest}; resume with --ckpt_path {newest} after fixing the cause."
