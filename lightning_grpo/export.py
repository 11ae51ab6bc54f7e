"""Export the trained policy as a Hugging Face checkpoint (``save_pretrained``) during and after fit.

``ExportHuggingFace(dirpath)`` writes ``pl_module.policy`` and the data module's tokenizer so that
``AutoModelForCausalLM.from_pretrained`` loads the trained weights: the final export goes to
``dirpath/final``; with ``every_n_steps`` an export also goes to ``dirpath/step_<global step>`` every
that many optimizer steps.

Sharded policies (FSDP2: parameters are DTensors) are first gathered into a full, CPU-offloaded
state dict with ``torch.distributed.checkpoint.state_dict.get_model_state_dict`` — a collective, so
every rank runs it — and rank 0 writes. Each export is written to a temporary sibling directory and
renamed into place, so a crash mid-export never leaves a half-written model where a complete one
(or nothing) was.

A policy trained with a LoRA adapter (``model.peft``) exports its adapter (``adapter_config.json`` and
the adapter weights; load with ``peft.AutoPeftModelForCausalLM.from_pretrained`` or
``PeftModel.from_pretrained(base, path)``), or with ``merge_adapter=True`` the base model with the
adapter merged into its weights: a plain checkpoint for ``AutoModelForCausalLM`` (and vLLM, ...).
Merging reads the weights and writes new ones; the training policy itself is left untouched.

An existing Lightning checkpoint becomes such a folder without training:
``lightning-grpo export --ckpt_path PATH --output_dir DIR`` (:mod:`lightning_grpo.export_command`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_grpo.peft_support import is_peft_model, merged_state_dict


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """A full (unsharded) CPU state dict of ``model``; collective for DTensor parameters.

    Returns None for a model whose parameters are plain tensors (``save_pretrained`` then reads the
    model itself).
    """
    if not any(hasattr(p, "full_tensor") for p in model.parameters()):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_pretrained_atomic(
    model: torch.nn.Module,
    dirpath: str | os.PathLike[str],
    tokenizer: Any | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """``model.save_pretrained`` (and ``tokenizer.save_pretrained``) into ``dirpath``, atomically.

    Writes into a temporary directory beside ``dirpath``, then swaps it in: the old export (if any)
    is renamed aside, the new one renamed into place, the old one deleted.
    """
    target = Path(dirpath)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        kwargs = {"state_dict": state_dict} if state_dict is not None else {}
        model.save_pretrained(staging, **kwargs)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def export_policy(
    policy: torch.nn.Module,
    dirpath: str | os.PathLike[str],
    tokenizer: Any | None = None,
    merge_adapter: bool = False,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``policy`` (and ``tokenizer``) as a Hugging Face folder at ``dirpath``, atomically.

    A peft policy writes its adapter, or with ``merge_adapter`` the base model with the adapter merged in;
    ``state_dict`` is a full state dict gathered from sharded parameters (None: the policy's own)."""
    model = policy
    if merge_adapter and is_peft_model(policy):
        model, state_dict = policy.get_base_model(), merged_state_dict(policy, state_dict)
    return save_pretrained_atomic(model, dirpath, tokenizer=tokenizer, state_dict=state_dict)


class ExportHuggingFace(Callback):
    """Write the policy and tokenizer with ``save_pretrained``: at the end of fit and/or periodically.

    Args:
        dirpath: root of the exports: ``dirpath/final`` and ``dirpath/step_<N>``.
        every_n_steps: also export every that many optimizer steps (None: only at the end).
        on_train_end: export to ``dirpath/final`` when fit ends.
        merge_adapter: for a policy with a peft adapter (LoRA), write the base model with the adapter
            merged in (a plain checkpoint) instead of the adapter alone. No effect without an adapter.
    """

    def __init__(
        self, dirpath: str, every_n_steps: int | None = None, on_train_end: bool = True, merge_adapter: bool = False
    ) -> None:
        super().__init__()
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}")
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.export_on_train_end = on_train_end  # not ``self.on_train_end``: that is the hook
        self.merge_adapter = merge_adapter
        self._last_bucket: int | None = None
        self.exported: list[Path] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_steps:
            self._last_bucket = trainer.global_step // self.every_n_steps  # no export right at a resume

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        if not self.every_n_steps:
            return
        bucket = trainer.global_step // self.every_n_steps  # several optimizer steps may run per batch
        if self._last_bucket is None or bucket > self._last_bucket:
            self._last_bucket = bucket
            self.export(trainer, pl_module, self.dirpath / f"step_{trainer.global_step}")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.export_on_train_end:
            self.export(trainer, pl_module, self.dirpath / "final")

    def export(self, trainer: Trainer, pl_module: LightningModule, path: Path) -> Path:
        """Gather (every rank), then write on rank 0; every rank waits for the write."""
        policy = getattr(pl_module, "policy", None)
        if policy is None:
            raise AttributeError(f"{type(pl_module).__name__} has no `policy` to export")
        state_dict = full_state_dict(policy)
        if trainer.is_global_zero:
            datamodule = getattr(trainer, "datamodule", None)
            tokenizer = getattr(datamodule, "tokenizer", None)
            export_policy(policy, path, tokenizer, merge_adapter=self.merge_adapter, state_dict=state_dict)
            self.exported.append(path)
        trainer.strategy.barrier("export_hugging_face")
        return path

    @property
    def state_key(self) -> str:
        """Unique per destination and format, so one run may export e.g. the adapter and the merged model."""
        return self._generate_state_key(dirpath=str(self.dirpath), merge_adapter=self.merge_adapter)

    def state_dict(self) -> dict[str, Any]:
        return {"last_bucket": self._last_bucket}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_bucket = state_dict.get("last_bucket")
