"""``lightning-grpo``: the LightningCLI entry point (fit | validate), ``verify`` (the math verifier's verdict on
one completion, with ``--explain``: see :mod:`lightning_grpo.rewards.explain`) and ``export`` (a checkpoint
as a Hugging Face folder: :mod:`lightning_grpo.export_command`). ``test`` and ``predict`` are not offered:
the module has no test or predict step.

The data module's tokenizer is linked to the policy's path, so a config names the model once. A config's
``prepare:`` section names a :class:`~lightning_grpo.preparation.RunPreparation` that runs before ``fit`` /
``validate`` (the demo's warm start builds its tiny model that way); the CLI imports nothing from the demo.

Every run also gets what :mod:`lightning_grpo.callbacks` provides (unless the config already has one
of a kind or turns it off): an interrupt checkpoint, a progress bar counting optimizer steps, a model
summary without unmeasured FLOPs; checkpoints are written atomically and verified on load
(:class:`~lightning_grpo.checkpoint_io.AtomicCheckpointIO`) unless the config names another checkpoint
IO; and Lightning messages whose premise does not hold here are silenced (:mod:`lightning_grpo.quiet`).

``fit`` says where its logs, checkpoints and exports go and what it wrote, and removes a log folder it
created when it fails before its first step (:mod:`lightning_grpo.run_folders`); ``--ckpt_path=last``
resumes the newest checkpoint of the run's log folder, in that folder (:mod:`lightning_grpo.resume`).
Bad input (a :class:`~lightning_grpo.errors.ConfigurationError`: a bad option value, a malformed data
row, ``trainer`` options manual optimisation cannot honour) ends the run with one line, no traceback;
a parse error shows its message without the usage text, a misspelled class name the allowed names
(:mod:`lightning_grpo.argument_parser`). ``fit --help`` lists the data's and the model's options first.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from lightning_grpo.argument_parser import GRPOArgumentParser
from lightning_grpo.argv_checks import check_appends_follow_configs
from lightning_grpo.callbacks import default_callbacks
from lightning_grpo.checkpoint_io import AtomicCheckpointIO
from lightning_grpo.data import RolloutDataModule
from lightning_grpo.errors import configuration_error_in
from lightning_grpo.module import GRPOModule
from lightning_grpo.preparation import RunPreparation
from lightning_grpo.quiet import silence_handled_messages
from lightning_grpo.renamed_options import check_renamed
from lightning_grpo.resume import as_list, resolve_checkpoint_path, resumed_config_filename
from lightning_grpo.run_folders import RunFolders
from lightning_grpo.trainer_options import check_trainer_options

SUBCOMMANDS_USAGE = "%(prog)s [-h] [-c CONFIG] [--print_config] [--data.* ...] [--model.* ...] [--trainer.* ...] [--ckpt_path PATH]"
OTHER_COMMANDS = (
    "Also: `lightning-grpo export --ckpt_path PATH --output_dir DIR` (a checkpoint as a Hugging Face folder) and "
    "`lightning-grpo verify COMPLETION GOLD --explain` (the math verifier's verdict)."
)


class GRPOCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit and validate; Lightning's test and predict need steps GRPOModule does not have."""
        return {key: value for key, value in LightningCLI.subcommands().items() if key in ("fit", "validate")}

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """As Lightning's, with the data's and the model's options before the Trainer's in ``--help``."""
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data)
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        section = self.config[subcommand] if subcommand else self.config
        check_trainer_options(section.get("trainer"))
        if subcommand:
            resumption = resolve_checkpoint_path(section, pin_version=subcommand == "fit")
            if resumption and _is_rank_zero():  # DDP's child processes parse the same command line again
                print(resumption.message, file=sys.stderr, flush=True)
            if resumption and resumption.log_dir is not None:
                # resuming into the run's own folder: that it is not empty is the point; its config.yaml stays
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
                self.save_config_kwargs["config_filename"] = resumed_config_filename(Path(section.ckpt_path))

    def fit(self, **kwargs: Any) -> None:
        try:
            self.trainer.fit(**kwargs)
        except BaseException:
            for callback in self.trainer.callbacks:
                if isinstance(callback, RunFolders):
                    callback.remove_if_unused(self.trainer)
            raise

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
        callbacks = as_list(trainer_args.get("callbacks"))
        plugins = as_list(trainer_args.get("plugins"))
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs.setdefault("plugins", [*plugins, AtomicCheckpointIO()])
        extra = default_callbacks(callbacks, trainer_args)
        if any(isinstance(c, ModelSummary) for c in extra):
            kwargs.setdefault("enable_model_summary", False)  # ours replaces Lightning's default one
        kwargs.setdefault("callbacks", [*callbacks, *extra, RunFolders()])  # notes the log folder in its setup
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        self._prepare()

    def before_validate(self) -> None:
        self._prepare()

    def _prepare(self) -> None:
        preparation = self.config_init[self.subcommand].get("prepare")
        if preparation is not None:
            preparation.prepare(self.model.hparams.model_name_or_path, self.datamodule.source)
        for callback in self.trainer.callbacks:  # after the preparation (minutes, maybe): the logger picks its
            if isinstance(callback, RunFolders):  # version folder now, just before anything is written there
                callback.record_log_dir(self.trainer)


def _is_rank_zero() -> bool:
    """False in a process a launcher started for another rank (``RANK`` / ``LOCAL_RANK`` set and not 0)."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK"))


def main(args: list[str] | None = None) -> None:
    if "" not in sys.path and os.getcwd() not in sys.path:  # as `python -m` does: myreward.py here imports
        sys.path.insert(0, os.getcwd())
    argv = list(args) if args is not None else sys.argv[1:]
    if argv[:1] == ["verify"]:  # `lightning-grpo verify COMPLETION GOLD --explain`: why a math reward was 0 or 1
        from lightning_grpo.rewards.explain import main as verify_main

        raise SystemExit(verify_main(argv[1:]))
    if argv[:1] == ["export"]:  # `lightning-grpo export --ckpt_path PATH --output_dir DIR`: no training run
        from lightning_grpo.export_command import main as export_main

        raise SystemExit(export_main(argv[1:]))
    silence_handled_messages()
    check_renamed(argv)
    check_appends_follow_configs(argv)
    subcommand_kwargs = {"usage": SUBCOMMANDS_USAGE, "epilog": OTHER_COMMANDS}
    try:
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
            parser_class=GRPOArgumentParser,
            parser_kwargs={"epilog": OTHER_COMMANDS, "fit": dict(subcommand_kwargs), "validate": dict(subcommand_kwargs)},
        )
    except ValueError as error:  # bad input: its message names the value; a traceback would bury it
        cause = configuration_error_in(error)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
