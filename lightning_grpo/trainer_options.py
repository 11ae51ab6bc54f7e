"""Trainer options GRPOModule cannot honour: refused before anything is built, naming the option to use instead.

GRPOModule optimises manually (a rollout feeds several optimizer steps), so Lightning refuses the options
automatic optimisation reads (gradient clipping, gradient accumulation) at fit time with an error about
manual optimisation. :func:`check_trainer_options` refuses them on the parsed config, as one line that
names the project's option for the same thing.
"""

from __future__ import annotations

from typing import Any

from lightning_grpo.errors import ConfigurationError

# Option -> (the value that leaves it off, what to use instead).
NOT_FOR_MANUAL_OPTIMIZATION: dict[str, tuple[Any, str]] = {
    "gradient_clip_val": (None, "model.optimizer.max_grad_norm (default 1.0; null: no clipping)"),
    "gradient_clip_algorithm": (None, "model.optimizer.max_grad_norm (gradient-norm clipping)"),
    "accumulate_grad_batches": (
        1,
        "model.update.micro_batch_size (completions per forward/backward; one optimizer step always spans its "
        "whole mini-batch) and model.update.updates_per_rollout (mini-batches per rollout)",
    ),
}


def check_trainer_options(trainer: Any) -> None:
    """Raise :class:`~lightning_grpo.errors.ConfigurationError` for a trainer option manual optimisation refuses.

    ``trainer`` is the parsed ``trainer`` section; a value that leaves an option off (also 0 for clipping,
    as a config that ``--print_config`` wrote has it) passes."""
    from lightning_grpo.errors import ConfigurationError

    for name, (off, instead) in NOT_FOR_MANUAL_OPTIMIZATION.items():
        value = trainer.get(name, off) if trainer is not None else off
        if value != off and not (name == "gradient_clip_val" and value == 0):
            raise ConfigurationError(
                f"trainer.{name}={value} does not apply here (GRPOModule optimises manually): use {instead}"
            )
