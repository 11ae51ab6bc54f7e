"""FSDP2 sharding plan for causal LMs, and gathering the parameters once per rollout.

``fully_shard_causal_lm`` applies ``fully_shard`` to each decoder layer, then to the root (which then
holds the embeddings, the final norm and the LM head). It is called from
``GRPOModule.configure_model`` when Lightning's ``ModelParallelStrategy`` (or
:class:`lightning_grpo.strategies.FSDP2Strategy`) gives the module a device mesh.

Generation under FSDP2: every forward of a sharded layer all-gathers its parameters and frees them
again afterwards, so a plain ``generate`` call gathers the whole model once per generated token and
every rank must join every forward (``synced_gpus=True``). :func:`gathered_for_generation` instead
all-gathers every layer once, keeps the full parameters through the whole ``generate`` call (the
per-layer pre-forward hooks then find the layer unsharded and skip the all-gather) and reshards on
exit. The price is memory: each rank holds the full (``param_dtype``) parameters while it samples,
as an unsharded model would. Measured on the tiny model, 2 CPU processes, gloo: see
``tests/distributed/generation.py`` (its REPEATS argument).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

# How each sharded module was asked to behave after a forward, so the generation context can put it
# back with the public ``set_reshard_after_forward`` API. Layers free their gathered parameters after
# each forward (the memory saving of FSDP); the root keeps its own (embeddings, norm, head) since
# its backward comes first and would gather them straight back (FSDP2's default for the root).
_RESHARD_AFTER_FORWARD_ATTR = "_grpo_reshard_after_forward"


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks: modules whose class is in ``model._no_split_modules``."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__} declares no decoder-layer class (_no_split_modules); cannot shard it")
    return layers


def mixed_precision_policy(
    param_dtype: torch.dtype | str | None = None,
    reduce_dtype: torch.dtype | str | None = None,
) -> "torch.distributed.fsdp.MixedPrecisionPolicy":
    """FSDP2 ``MixedPrecisionPolicy``; dtypes may be given by name ("bfloat16", "float32", ...).

    ``param_dtype`` is the dtype of the gathered parameters used by forward/backward (the sharded
    master copy keeps the loaded dtype, which the optimizer updates); ``reduce_dtype`` the dtype of the
    gradient reduce-scatter. ``None`` keeps the parameter's own dtype.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=_dtype(param_dtype), reduce_dtype=_dtype(reduce_dtype))


def _dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, value, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {value!r}")
    return dtype


def fully_shard_causal_lm(
    model: nn.Module,
    mesh: DeviceMesh,
    param_dtype: torch.dtype | str | None = None,
    reduce_dtype: torch.dtype | str | None = None,
    mp_policy: "torch.distributed.fsdp.MixedPrecisionPolicy | None" = None,
) -> nn.Module:
    """``fully_shard`` each decoder layer, then the root, over the 1-D data-parallel ``mesh``.

    The mixed-precision policy is ``mp_policy`` if given, else built from ``param_dtype`` and
    ``reduce_dtype`` (both ``None``: everything in the loaded dtype, e.g. float32 on CPU).
    """
    from torch.distributed.fsdp import fully_shard

    policy = mp_policy if mp_policy is not None else mixed_precision_policy(param_dtype, reduce_dtype)
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
        setattr(layer, _RESHARD_AFTER_FORWARD_ATTR, True)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=False)
    setattr(model, _RESHARD_AFTER_FORWARD_ATTR, False)
    return model


def fsdp_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that ``fully_shard`` was applied to (root last), or [] if none."""
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)][::-1]


def is_fsdp2(model: nn.Module) -> bool:
    return bool(fsdp_modules(model))


@contextmanager
def gathered_for_generation(model: nn.Module) -> Iterator[nn.Module]:
    """All-gather an FSDP2 model's parameters once, keep them through the block, reshard on exit.

    Inside the block a forward runs no collective at all (each layer's pre-forward hook finds its
    parameters already unsharded and its post-forward hook is told not to free them), so a whole
    ``generate`` call costs one all-gather per layer instead of one per layer and token, and ranks
    that stop generating early no longer hold up the others. Every rank must enter the block (the
    gather is a collective). A no-op for a model that is not sharded with FSDP2 (single process,
    DDP). Use only without grad: the parameters are re-sharded on exit, so no graph may outlive it.
    """
    modules = fsdp_modules(model)
    if not modules:
        yield model
        return
    handles = [m.unshard(async_op=True) for m in modules]  # issue every all-gather, then wait
    for handle in handles:
        if handle is not None:
            handle.wait()
    for m in modules:
        m.set_reshard_after_forward(False, recurse=False)
    try:
        yield model
    finally:
        for m in modules:
            m.set_reshard_after_forward(getattr(m, _RESHARD_AFTER_FORWARD_ATTR, True), recurse=False)
            m.reshard()
