"""LoRA (and other ``peft`` adapters) on the policy: wrapping, the adapter-free reference, merged export.

``GRPOModule(peft=LoraConfig(...))`` (in a config: ``model.peft: {class_path: peft.LoraConfig,
init_args: {r: 16, lora_alpha: 32, target_modules: [q_proj, ...], lora_dropout: 0.0}}``) wraps the
loaded policy with :func:`apply_adapter`. Then:

* only the adapter's parameters require grad, so only they are in the optimizer and the gradient
  all-reduce (DDP) or reduce-scatter (FSDP2);
* the KL reference is the same network with its adapters switched off (:func:`adapters_disabled`,
  peft's ``disable_adapter``): no second copy of the base weights, and its log-probs are exactly the
  base model's (a disabled LoRA layer computes its base layer alone);
* checkpoints hold the trainable (adapter) weights and their optimizer state; the frozen base
  weights are reloaded from ``model_name_or_path`` on resume;
* :func:`merged_state_dict` gives the base model's state dict with each adapter folded into its
  weight (W + scaling · B A), for a plain ``from_pretrained`` checkpoint (see ``export.py``).

The fast sampler's lean decode steps need plain ``nn.Linear`` projections; with LoRA they fall
back to the HF forward with a logged reason (``StaticCacheDecoder.unsupported_reason`` in
``sampling/static_cache.py``). Adapter dropout (``lora_dropout``) is active in every training-mode
forward, including the one that computes logp_old when a rollout feeds several updates, so ratios
then carry dropout noise; 0 avoids that.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ContextManager

import torch
from torch import nn

MERGEABLE_HINT = "export the adapter itself (merge_adapter=False) and merge it with peft's merge_and_unload offline"


def is_peft_model(model: nn.Module | None) -> bool:
    if model is None:
        return False
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def apply_adapter(model: nn.Module, config: Any) -> nn.Module:
    """``peft.get_peft_model(model, config)`` for a causal LM; only the adapter's parameters then train.

    ``config`` must be a ``peft.PeftConfig`` (e.g. ``LoraConfig``); an unset ``task_type`` becomes
    ``CAUSAL_LM``. A config whose ``target_modules`` match nothing in the model is an error naming them.
    """
    from peft import PeftConfig, TaskType, get_peft_model

    if not isinstance(config, PeftConfig):
        raise TypeError(
            f"model.peft must be a peft config such as peft.LoraConfig (class_path: peft.LoraConfig), "
            f"got {type(config).__name__}: {config!r}"
        )
    if getattr(config, "task_type", None) is None:
        config.task_type = TaskType.CAUSAL_LM
    try:
        wrapped = get_peft_model(model, config)
    except ValueError as error:
        names = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(
            f"cannot apply {type(config).__name__}(target_modules={getattr(config, 'target_modules', None)!r}) to "
            f"{type(model).__name__}: {error} (its linear layers are named {names})"
        ) from error
    return wrapped


def adapters_disabled(model: nn.Module) -> ContextManager[Any]:
    """A context in which a ``PeftModel`` computes its base model alone (a no-op for other models)."""
    return model.disable_adapter() if is_peft_model(model) else nullcontext()


def trainable_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that train (the adapter's, under an adapter)."""
    return {name for name, param in model.named_parameters() if param.requires_grad}


def _lora_linears(model: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def merged_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The base model's state dict (its own key names) with every LoRA adapter merged into its weight.

    ``state_dict`` is the ``PeftModel``'s full state dict (e.g. gathered from FSDP2 shards); None
    reads the model's own. Nothing in the model changes. Supports plain LoRA on linear layers
    (W' = W + scaling · B A, transposed for ``fan_in_fan_out``; plus the LoRA bias if any); other
    variants (DoRA, ...), adapters on embeddings and ``modules_to_save`` raise with a hint.
    """
    if not is_peft_model(model):
        raise TypeError(f"{type(model).__name__} carries no peft adapter to merge")
    adapter = model.active_adapter
    state = dict(state_dict if state_dict is not None else model.state_dict())
    prefix = "base_model.model."
    merged: dict[str, torch.Tensor] = {}
    for name, layer in _lora_linears(model).items():
        if adapter not in layer.lora_A:
            continue
        if type(layer.get_base_layer()) is not nn.Linear or adapter in getattr(layer, "lora_variant", {}):
            raise ValueError(f"cannot merge the adapter of {name} ({type(layer).__name__}): only plain LoRA on "
                             f"nn.Linear is merged here; {MERGEABLE_HINT}")
        weight = state.pop(f"{name}.base_layer.weight")  # [out, in]
        lora_a = state.pop(f"{name}.lora_A.{adapter}.weight").float()  # [r, in]
        lora_b = state.pop(f"{name}.lora_B.{adapter}.weight").float()  # [out, r]
        delta = (lora_b @ lora_a) * layer.scaling[adapter]  # [out, in]
        if layer.fan_in_fan_out:
            delta = delta.t()
        merged[f"{name}.weight"] = (weight.float() + delta).to(weight.dtype)
        bias_key = f"{name}.base_layer.bias"
        lora_bias = state.pop(f"{name}.lora_B.{adapter}.bias", None)
        if bias_key in state:
            bias = state.pop(bias_key)
            if lora_bias is not None:
                bias = (bias.float() + lora_bias.float() * layer.scaling[adapter]).to(bias.dtype)
            merged[f"{name}.bias"] = bias
    for key, value in state.items():
        if ".lora_" in key or "modules_to_save" in key or "original_module" in key or "base_layer" in key:
            raise ValueError(f"cannot merge {key!r} into the base model; {MERGEABLE_HINT}")
        merged[key] = value
    result = {}
    for key, value in merged.items():
        if not key.startswith(prefix):
            raise ValueError(f"unexpected key {key!r} in the state dict of a PeftModel (expected {prefix!r}...)")
        result[key[len(prefix):]] = value
    return result
