"""Non-finite guard: are all gradients finite, on every rank?

One NaN or Inf gradient turns the optimizer step (Adam's moments included) into NaN for good, so the
module skips such a step and counts it. The answer must be the same on every rank: with DDP the
gradients are already all-reduced (a NaN anywhere reaches every rank), but under FSDP2 each rank holds
only its shard of each gradient (a DTensor), so the local verdicts are combined with a MIN all-reduce
over the DTensors' device mesh. Every rank must call :func:`grads_are_finite` when grads are sharded.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor


def grads_are_finite(parameters: Iterable[torch.nn.Parameter] | torch.nn.Module) -> bool:
    """True when every existing ``.grad`` of ``parameters`` is finite (on all ranks of a sharded grad).

    Parameters without a gradient are ignored. Costs one device sync (and, for DTensor gradients, one
    all-reduce of a single integer per mesh dimension).
    """
    if isinstance(parameters, torch.nn.Module):
        parameters = parameters.parameters()
    locals_: list[Tensor] = []
    meshes = {}
    for p in parameters:
        grad = p.grad
        if grad is None:
            continue
        if hasattr(grad, "to_local") and hasattr(grad, "device_mesh"):  # DTensor (FSDP2, tensor parallel)
            meshes[id(grad.device_mesh)] = grad.device_mesh
            grad = grad.to_local()
        locals_.append(grad)
    device = locals_[0].device if locals_ else _mesh_device(meshes)
    finite = torch.ones((), dtype=torch.int32, device=device)
    checks = [torch.isfinite(g).all() for g in locals_ if g.numel()]  # an empty shard is finite
    if checks:
        finite = torch.stack(checks).all().to(torch.int32)
    if meshes and dist.is_available() and dist.is_initialized():
        for mesh in meshes.values():
            for dim in range(mesh.ndim):
                dist.all_reduce(finite, op=dist.ReduceOp.MIN, group=mesh.get_group(dim))
    return bool(finite.item())


def _mesh_device(meshes: dict) -> torch.device:  # type: ignore[type-arg]
    for mesh in meshes.values():
        if mesh.device_type == "cuda":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device(mesh.device_type)
    return torch.device("cpu")
