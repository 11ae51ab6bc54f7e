"""``lightning-grpo``: the LightningCLI entry point (fit | validate | test), and ``verify`` (the math verifier's
verdict on one completion, with ``--explain``: see :mod:`lightning_grpo.rewards.explain`).

The data module's tokenizer is linked to the policy's path, so a config names the model once. A config's
``prepare:`` section names a :class:`~lightning_grpo.preparation.RunPreparation` that runs before ``fit`` /
``validate`` (the demo's warm start builds its tiny model that way); the CLI imports nothing from the demo.

Every run also gets what :mod:`lightning_grpo.callbacks` provides (unless the config already has one
of a kind or turns it off): an interrupt checkpoint, a progress bar counting optimizer steps, a model
summary without unmeasured FLOPs; checkpoints are written atomically and verified on load
(:class:`~lightning_grpo.checkpoint_io.AtomicCheckpointIO`) unless the config names another checkpoint
IO; and Lightning messages whose premise does not hold here are silenced (:mod:`lightning_grpo.quiet`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from lightning_grpo.callbacks import default_callbacks
from lightning_grpo.checkpoint_io import AtomicCheckpointIO
from lightning_grpo.data import RolloutDataModule
from lightning_grpo.module import GRPOModule
from lightning_grpo.preparation import RunPreparation
from lightning_grpo.quiet import silence_handled_messages
from lightning_grpo.renamed_options import check_renamed


class GRPOCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("model.model_name_or_path", "data.tokenizer")
        parser.add_argument(
            "--prepare",
            type=RunPreparation | None,
            default=None,
            help="Something to do before fit/validate, by class_path (a RunPreparation): e.g. the demo's warm start, "
            "lightning_grpo.demo.warm_start.WarmStart, which builds its tiny model at its output_dir.",
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init  # run=False: no subcommand
        trainer_args = config.get("trainer") or {}
        callbacks = _as_list(trainer_args.get("callbacks"))
        plugins = _as_list(trainer_args.get("plugins"))
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs.setdefault("plugins", [*plugins, AtomicCheckpointIO()])
        extra = default_callbacks(callbacks, trainer_args)
        if any(isinstance(c, ModelSummary) for c in extra):
            kwargs.setdefault("enable_model_summary", False)  # ours replaces Lightning's default one
        kwargs.setdefault("callbacks", [*callbacks, *extra])
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        self._prepare()

    def before_validate(self) -> None:
        self._prepare()

    def _prepare(self) -> None:
        preparation = self.config_init[self.subcommand].get("prepare")
        if preparation is not None:
            preparation.prepare(self.model.hparams.model_name_or_path, self.datamodule.source)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def main(args: list[str] | None = None) -> None:
    if "" not in sys.path and os.getcwd() not in sys.path:  # as `python -m` does: myreward.py here imports
        sys.path.insert(0, os.getcwd())
    argv = list(args) if args is not None else sys.argv[1:]
    if argv[:1] == ["verify"]:  # `lightning-grpo verify COMPLETION GOLD --explain`: why a math reward was 0 or 1
        from lightning_grpo.rewards.explain import main as verify_main

        raise SystemExit(verify_main(argv[1:]))
    silence_handled_messages()
    check_renamed(argv)
    GRPOCLI(
        GRPOModule,
        RolloutDataModule,
        subclass_mode_model=False,
        subclass_mode_data=False,
        # GRPOModule builds its own optimizer and schedule (model.optimizer: learning_rate, lr_schedule, ...):
        # Lightning's --optimizer / --lr_scheduler would be offered and then fail with "empty parameter list".
        auto_configure_optimizers=False,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
