"""``lightning-grpo export``: a Lightning checkpoint of a run as a Hugging Face folder, without a training run.

::

    lightning-grpo export --ckpt_path runs/demo/version_0/checkpoints/last.ckpt --output_dir runs/demo/hf
    lightning-grpo export --ckpt_path PATH --config RUN_CONFIG.yaml --output_dir DIR --merge_adapter

The policy is rebuilt as ``fit`` built it (its base from ``model_name_or_path`` in ``dtype``, plus the
``model.peft`` adapter if any), the checkpoint's ``policy.*`` weights are loaded into it (every key must
match, or the export stops naming what differs; a LoRA checkpoint holds only the adapter, whose every
weight must be there) and it is written with
:func:`~lightning_grpo.export.export_policy`, the code the ``ExportHuggingFace`` callback uses, with the
tokenizer of ``model_name_or_path``. Without ``--config`` the model comes from the checkpoint's own
hyperparameters; a LoRA run needs its config (or ``--model.peft``), since the adapter's config is not
among them. Only the ``model`` section is read (:func:`model_arguments`): a run's saved
``version_N/config.yaml`` works as it is, and its ``trainer``, ``data`` and other sections (an
accelerator this host lacks, the ``ckpt_path`` it resumed from) play no part; so do ``--trainer.*``,
``--data.*`` and ``--prepare`` options on the command line. ``--merge_adapter`` writes the base model with the adapter merged in (a plain checkpoint for
``AutoModelForCausalLM``); without it a LoRA run exports its adapter. Only single-file checkpoints: a
sharded FSDP2 folder is refused (the ``ExportHuggingFace`` callback exports those runs as they train).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from lightning_grpo.argv_checks import config_file_at
from lightning_grpo.checkpoint_io import AtomicCheckpointIO
from lightning_grpo.errors import ConfigurationError, configuration_error_in
from lightning_grpo.export import export_policy
from lightning_grpo.models import load_causal_lm, load_tokenizer
from lightning_grpo.peft_support import apply_adapter, trainable_parameter_names

POLICY_PREFIX = "policy."
# Top-level sections of a `fit` config (and their options) that say nothing about the model: skipped here.
OTHER_SECTIONS = ("trainer", "data", "prepare", "seed_everything", "ckpt_path", "optimizer", "lr_scheduler")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-grpo export",
        description="Write a Lightning checkpoint's policy and tokenizer as a Hugging Face folder (save_pretrained).",
        epilog="Any other option (--config FILE, --model.*) is read as `lightning-grpo fit` reads it, for the model "
        "section only (a run's saved version_N/config.yaml works as it is): give the run's config for a LoRA run.",
    )
    parser.add_argument("--ckpt_path", required=True, help="the checkpoint file (e.g. .../checkpoints/last.ckpt)")
    parser.add_argument("--output_dir", required=True, help="the folder to write (replaced atomically if it exists)")
    parser.add_argument("--merge_adapter", action="store_true", help="LoRA: merge the adapter into the base weights")
    return parser


def load_checkpoint(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigurationError(
            f"{path} is a sharded (FSDP2) checkpoint folder, which this command does not read: export during "
            "training with the lightning_grpo.export.ExportHuggingFace callback (it gathers the shards)"
        )
    if not path.is_file():
        raise ConfigurationError(f"--ckpt_path: no checkpoint file at {path}")
    return AtomicCheckpointIO().load_checkpoint(path, map_location="cpu", weights_only=True)


def _model_section(path: str) -> Any:
    """The ``model`` part of the YAML config at ``path`` (None when it has none)."""
    try:
        with open(path) as handle:
            config = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as error:
        raise ConfigurationError(f"--config {path}: cannot read it ({error})") from None
    if not isinstance(config, dict):
        raise ConfigurationError(f"--config {path}: not a mapping of sections (model:, trainer:, ...), got {config!r:.60}")
    return config.get("model")


def model_arguments(cli_args: list[str]) -> list[str]:
    """``cli_args`` for a parser of the ``model`` section alone, in their order: a ``--config FILE`` (``-c``)
    becomes ``--model <its model section>``, ``--model.*`` stays, the other sections' options are dropped."""
    kept: list[str] = []
    i = 0
    while i < len(cli_args):
        arg = cli_args[i]
        path = config_file_at(cli_args, i)
        if path is not None:
            section = _model_section(path)
            if section is not None:
                kept += ["--model", yaml.safe_dump(section)]
            i += 2 if arg in ("--config", "-c") else 1
            continue
        with_value = arg.startswith("--") and "=" not in arg and i + 1 < len(cli_args) and not cli_args[i + 1].startswith("--")
        step = 2 if with_value else 1
        if arg.startswith("--") and arg[2:].split("=", 1)[0].split("+", 1)[0].split(".", 1)[0] in OTHER_SECTIONS:
            i += step
            continue
        kept += cli_args[i:i + step]
        i += step
    return kept


def model_settings(checkpoint: dict[str, Any], path: Path, cli_args: list[str]) -> tuple[str, str, Any]:
    """(model_name_or_path, dtype, peft config) from the CLI options when given, else from the checkpoint."""
    if cli_args:
        from lightning_grpo.argument_parser import GRPOArgumentParser
        from lightning_grpo.module import GRPOModule

        parser = GRPOArgumentParser(prog="lightning-grpo export")
        parser.add_lightning_class_args(GRPOModule, "model", subclass_mode=False)
        config = parser.parse_args(model_arguments(cli_args))
        model = parser.instantiate_classes(config).model
        return model.hparams.model_name_or_path, model.hparams.dtype, model.peft_config
    hparams = checkpoint.get("hyper_parameters") or {}
    if "model_name_or_path" not in hparams:
        raise ConfigurationError(f"{path} records no model_name_or_path: give the run's config with --config")
    return hparams["model_name_or_path"], hparams.get("dtype", "float32"), None


def export_checkpoint(ckpt_path: str, output_dir: str, cli_args: list[str] | None = None,
                      merge_adapter: bool = False) -> Path:
    """Load the policy of the checkpoint at ``ckpt_path`` and write it (and its tokenizer) to ``output_dir``."""
    path = Path(ckpt_path)
    checkpoint = load_checkpoint(path)
    name, dtype, peft = model_settings(checkpoint, path, list(cli_args or []))
    weights = {k[len(POLICY_PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(POLICY_PREFIX)}
    if peft is None and any(".lora_A." in key for key in weights):
        raise ConfigurationError(
            f"{path} holds a LoRA adapter whose config is not in the checkpoint: add the run's --config (or --model.peft)"
        )
    policy = load_causal_lm(name, dtype, role="policy (the model the checkpoint was trained from)")
    if peft is not None:
        policy = apply_adapter(policy, peft)
    missing, unexpected = policy.load_state_dict(weights, strict=False)
    if peft is not None:  # a LoRA checkpoint holds what trains (the adapter); the frozen base weights are the base model's
        trainable = trainable_parameter_names(policy)
        missing = [key for key in missing if key in trainable]
    if missing or unexpected:
        raise ConfigurationError(
            f"{path} does not fit the model {name}: {len(missing)} weight(s) missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); give the run's config with --config"
        )
    return export_policy(policy, output_dir, load_tokenizer(name), merge_adapter=merge_adapter)


def main(argv: list[str]) -> int:
    args, rest = _parser().parse_known_args(argv)
    try:
        written = export_checkpoint(args.ckpt_path, args.output_dir, rest, args.merge_adapter)
    except (ValueError, FileNotFoundError) as error:  # ValueError: jsonargparse re-raises a ConfigurationError as one
        cause = configuration_error_in(error) if isinstance(error, ValueError) else error
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 1
    print(f"exported the policy of {args.ckpt_path} to {written}", file=sys.stderr)
    return 0
