"""The non-finite gradient guard: plain tensors, and DTensor shards that agree across 2 gloo ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from lightning_grpo.guards import grads_are_finite

ROOT = Path(__file__).resolve().parents[1]


def _model_with_grads(*values: float) -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model(torch.ones(1, 2)).sum().backward()
    for v in values:
        model[1].weight.grad[0, 0] = v
    return model


def test_finite_grads_pass_and_nan_or_inf_fail() -> None:
    assert grads_are_finite(_model_with_grads())
    assert grads_are_finite(_model_with_grads(1e30).parameters())  # large but finite
    assert not grads_are_finite(_model_with_grads(float("nan")))
    assert not grads_are_finite(_model_with_grads(float("inf")).parameters())
    assert not grads_are_finite(_model_with_grads(float("-inf")))


def test_parameters_without_grad_are_ignored() -> None:
    model = torch.nn.Linear(2, 2)
    assert grads_are_finite(model)  # no grad at all
    model.weight.grad = torch.ones(2, 2)
    assert grads_are_finite(model)
    model.bias.grad = torch.tensor([0.0, float("nan")])
    assert not grads_are_finite([model.weight, model.bias])


def _rank_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    param = torch.nn.Parameter(distribute_tensor(torch.zeros(4, 3), mesh, [Shard(0)]))
    verdicts = {}
    for case, bad_rank in (("clean", None), ("nan_on_rank1", 1), ("inf_on_rank0", 0)):
        local = torch.ones(2, 3)
        if rank == bad_rank:
            local[1, 2] = float("nan") if case.startswith("nan") else float("inf")
        param.grad = DTensor.from_local(local, mesh, [Shard(0)])
        verdicts[case] = grads_are_finite([param])
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(verdicts))
    dist.destroy_process_group()


def test_sharded_grads_give_the_same_verdict_on_every_rank(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in range(2):
        verdicts = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert verdicts == {"clean": True, "nan_on_rank1": False, "inf_on_rank0": False}, (rank, verdicts)


if __name__ == "__main__":
    import torch.multiprocessing as mp

    mp.start_processes(_rank_main, args=(2, os.path.join(sys.argv[1], "init"), sys.argv[1]), nprocs=2, start_method="fork")
