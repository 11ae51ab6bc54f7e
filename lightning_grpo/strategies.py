"""FSDP2Strategy: Lightning's ``ModelParallelStrategy`` set up for pure data-parallel sharding.

Lightning's ``ModelParallelStrategy`` defaults to ``data_parallel_size = num_nodes`` and
``tensor_parallel_size = devices per node``: on one machine with ``--trainer.devices=2`` that is a
2-way *tensor*-parallel mesh and a 1-way data-parallel one, so ``fully_shard`` over the
``data_parallel`` dimension would shard nothing and gradients would not be synchronised. This
subclass makes ``"auto"`` mean "all ranks are data parallel" (tensor parallelism is not used by
``GRPOModule``), and carries the FSDP2 mixed-precision policy so that a config chooses it:

- ``param_dtype="auto"``: bfloat16 gathered parameters on a CUDA device that supports them, the
  loaded dtype (float32) otherwise (CPU, where bf16 matmuls are slow and gloo reduces in fp32);
- ``reduce_dtype="float32"``: gradients are reduce-scattered in float32.

It runs on CPU with gloo (the backend Lightning picks for a CPU root device) and on GPU with NCCL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import ModelParallelStrategy

from lightning_grpo.sharding import mixed_precision_policy

DtypeName = Literal["auto", "float32", "bfloat16", "float16"]


class FSDP2Strategy(ModelParallelStrategy):
    def __init__(
        self,
        data_parallel_size: Literal["auto"] | int = "auto",
        tensor_parallel_size: int = 1,
        param_dtype: DtypeName | None = "auto",
        reduce_dtype: DtypeName | None = "float32",
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
    ) -> None:
        """
        Args:
            data_parallel_size: ranks that shard the model and split the batch ("auto": all of them,
                i.e. world size / tensor_parallel_size).
            tensor_parallel_size: must stay 1 for ``GRPOModule`` (it shards over data parallel only).
            param_dtype: dtype of the gathered parameters in forward/backward ("auto": bfloat16 on a
                bf16-capable GPU, else None = the loaded dtype). The sharded master weights and the
                optimizer state keep the loaded dtype (``model.dtype``, float32 by default).
            reduce_dtype: dtype of the gradient reduce-scatter ("auto": float32).
            save_distributed_checkpoint: one shard file per rank (torch.distributed.checkpoint);
                False gathers a single full checkpoint on rank 0.
            process_group_backend: None picks gloo on CPU, nccl on GPU.
        """
        if tensor_parallel_size != 1:
            raise ValueError(
                f"tensor_parallel_size={tensor_parallel_size}: GRPOModule shards over data parallel only; use 1"
            )
        super().__init__(
            data_parallel_size=data_parallel_size,
            tensor_parallel_size=tensor_parallel_size,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        self.param_dtype = param_dtype
        self.reduce_dtype = reduce_dtype

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":
            self._data_parallel_size = (self.num_nodes * self.num_processes) // self._tensor_parallel_size
        super().setup_environment()

    @property
    def mp_policy(self) -> "torch.distributed.fsdp.MixedPrecisionPolicy":
        """The FSDP2 mixed-precision policy for ``fully_shard`` (resolves "auto" on the root device)."""
        return mixed_precision_policy(self._resolve(self.param_dtype, "bfloat16"), self._resolve(self.reduce_dtype, "float32"))

    def _resolve(self, name: str | None, auto_on_gpu: str) -> str | None:
        if name != "auto":
            return name
        device = self.root_device
        if device.type == "cuda" and (auto_on_gpu != "bfloat16" or torch.cuda.is_bf16_supported()):
            return auto_on_gpu
        return None if auto_on_gpu == "bfloat16" else auto_on_gpu


def strategy_mp_policy(strategy: object) -> "torch.distributed.fsdp.MixedPrecisionPolicy | None":
    """The strategy's FSDP2 mixed-precision policy, or None (plain ``ModelParallelStrategy``)."""
    return getattr(strategy, "mp_policy", None)
