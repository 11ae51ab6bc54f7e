"""GRPOModule's grouped settings: the optimiser, the update loop and logging (``model.optimizer``, ...).

Each group is a frozen dataclass that checks its own values; in YAML each is a mapping under ``model``::

    model:
      optimizer: {learning_rate: 1.0e-6, warmup_steps: 10, lr_schedule: cosine}
      update: {updates_per_rollout: 4, micro_batch_size: 8}
      logging: {log_completions_every_n_steps: 20}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lightning_grpo.errors import ConfigurationError


@dataclass(frozen=True)
class Optimization:
    """AdamW and its schedule (``model.optimizer``).

    Args:
        learning_rate: AdamW's peak learning rate (reached after ``warmup_steps``); RL fine-tuning of a
            pretrained model uses about 1e-6, a tiny model from scratch about 1e-4.
        weight_decay: AdamW's decoupled weight decay.
        adam_betas: AdamW's (beta1, beta2), the decay rates of its moment estimates.
        warmup_steps: linear warm-up from 0, in optimizer steps.
        lr_schedule: after warm-up, ``constant``, or ``cosine``/``linear`` decay to
            ``min_lr_ratio × learning_rate`` at ``trainer.max_steps``.
        min_lr_ratio: the decay's floor, as a share of ``learning_rate``.
        max_grad_norm: clip the gradient norm to this (None: no clipping; the norm is logged).
    """

    learning_rate: float = 1e-6
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    min_lr_ratio: float = 0.0
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigurationError(f"model.optimizer.learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ConfigurationError(f"model.optimizer.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass(frozen=True)
class UpdateLoop:
    """How a rollout becomes optimizer steps (``model.update``).

    Args:
        updates_per_rollout: optimizer steps per rollout batch (its number of mini-batches).
        epochs: passes over the rollout batch.
        micro_batch_size: completions per forward/backward (None: a whole mini-batch); the update does
            not depend on it, only the memory does (what ``trainer.accumulate_grad_batches`` does elsewhere).
        mask_truncated: zero the loss mask of completions without EOS (DAPO overlong filtering).
        logp_chunk_size: completion positions per float32 chunk of the log-prob/entropy pass.
        on_nonfinite: when the gradient norm is NaN or infinite, ``skip`` the update (counted in
            ``train/skipped_updates``) or ``raise``.
        max_consecutive_skips: with ``on_nonfinite: skip``, this many skipped updates in a row stop the run
            with an error naming the last good checkpoint (a run whose every update is skipped is not
            training); 0: never stop.
        max_rollouts: the run's budget in rollouts: it stops after this many and sets ``trainer.max_steps`` (which
            counts optimizer steps) to ``max_rollouts × updates_per_rollout × epochs``; None: ``trainer.max_steps`` ends it.
    """

    updates_per_rollout: int = 1
    epochs: int = 1
    micro_batch_size: int | None = None
    mask_truncated: bool = False
    logp_chunk_size: int = 64
    on_nonfinite: Literal["skip", "raise"] = "skip"
    max_consecutive_skips: int = 20
    max_rollouts: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("updates_per_rollout", self.updates_per_rollout), ("epochs", self.epochs)):
            if value < 1:
                raise ConfigurationError(f"model.update.{name} must be >= 1, got {value}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ConfigurationError(f"model.update.micro_batch_size must be >= 1 or None, got {self.micro_batch_size}")
        if self.max_rollouts is not None and self.max_rollouts < 1:
            raise ConfigurationError(f"model.update.max_rollouts must be >= 1 or None, got {self.max_rollouts}")

    @property
    def steps_per_rollout(self) -> int:
        return self.updates_per_rollout * self.epochs


@dataclass(frozen=True)
class Logging:
    """Example completions in the logs (``model.logging``).

    Args:
        log_completions_every_n_steps: rollouts between two text samples (0: never).
        num_completions_to_log: completions per text sample.
    """

    log_completions_every_n_steps: int = 50
    num_completions_to_log: int = 4
