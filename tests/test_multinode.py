"""Two "nodes" of one CPU process each (gloo, on localhost) train like one process.

Each node is its own OS process started by this test, as a job scheduler would start one per machine:

* Lightning's own cluster environment: ``NODE_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in the
  environment and ``Trainer(num_nodes=2, devices=1)`` (what ``lightning-grpo fit --trainer.num_nodes=2
  --trainer.devices=1`` does on each machine);
* ``torchrun --nnodes=2 --nproc_per_node=1 --node_rank=i --master_addr ... --master_port ...``
  (TorchElastic's environment), the launch line the README shows for torchrun.

The nodes run ``tests/distributed/train_fixed.py``'s fixed global batches (through
``train_multinode.py``) for 3 rollouts x 2 optimizer steps with the reference model (beta = 0.04):
DDP under Lightning's environment and FSDP2 under torchrun. Both must match the 1-process run on the same global batches with the tolerances of
``tests/test_distributed.py`` (float32; only the order of floating-point sums differs): losses and
gradient norms at rtol 1e-5, parameters at atol 1e-5.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_distributed import METRIC_RTOL, PARAM_ATOL, SCRIPTS, TIMEOUT, _assert_same_run, _env, _train_fixed

pytestmark = pytest.mark.distributed  # every test here starts several processes (and is also slow)

# Variables a launcher may have left in this process's environment; each node gets only its own.
_LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK",
                       "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in _env().items() if k not in _LAUNCHER_VARIABLES and not k.startswith("SLURM_")}
    env.update(extra)
    return env


def _run_nodes(commands: list[list[str]], envs: list[dict[str, str]], cwd: Path) -> None:
    """Start every node at once (they rendezvous with each other) and wait for all of them."""
    nodes = [
        subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
        for cmd, env in zip(commands, envs)
    ]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=TIMEOUT))
    except subprocess.TimeoutExpired:
        for node in nodes:
            node.kill()
        pytest.fail(f"the nodes did not finish within {TIMEOUT} s: {commands}")
    for i, (node, (out, err)) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"node {i} failed\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-5000:]}"


def _train_on_two_nodes(model: Path, out: Path, strategy: str, launcher: str) -> dict:
    port = str(_free_port())
    script_args = ["--model", str(model), "--out", str(out), "--strategy", strategy, "--devices", "1",
                   "--max_steps", "6", "--num_nodes", "2"]
    script = str(SCRIPTS / "train_multinode.py")
    commands, envs = [], []
    for node_rank in (0, 1):
        if launcher == "lightning":
            commands.append([sys.executable, script, *script_args])
            envs.append(_node_env({"NODE_RANK": str(node_rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}))
        else:
            commands.append([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                             f"--node_rank={node_rank}", "--master_addr=127.0.0.1", f"--master_port={port}",
                             script, *script_args])
            envs.append(_node_env({}))
    _run_nodes(commands, envs, cwd=out.parent)
    info = json.loads((out / "losses.json").read_text())
    info["params"] = torch.load(out / "params.pt")
    info["layout"] = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return info


@pytest.fixture(scope="module")
def single(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _train_fixed(tiny_model_dir, tmp_path_factory.mktemp("multinode") / "single", "single")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "launcher"), [("ddp", "lightning"), ("fsdp2", "torchrun")]
)
def test_two_nodes_train_like_one_process(
    strategy: str, launcher: str, single: dict, tiny_model_dir: Path, tmp_path: Path
) -> None:
    got = _train_on_two_nodes(tiny_model_dir, tmp_path / "nodes", strategy, launcher)
    # two processes, one per node, each told its node by the launcher
    layout = sorted(got["layout"], key=lambda r: r["global_rank"])
    assert [(r["node_rank"], r["local_rank"], r["global_rank"]) for r in layout] == [(0, 0, 0), (1, 0, 1)]
    assert all(r["num_nodes"] == 2 and r["world_size"] == 2 for r in layout)
    expected_environment = "LightningEnvironment" if launcher == "lightning" else "TorchElasticEnvironment"
    assert {r["environment"] for r in layout} == {expected_environment}
    assert layout[0]["pid"] != layout[1]["pid"]
    assert got["world_size"] == 2 and got["sharded"] == (strategy == "fsdp2")
    # the same update as one process on the same global batches
    _assert_same_run(got, single, PARAM_ATOL, METRIC_RTOL)
    assert len(got["steps"]) == 3 and got["steps"][-1]["global_step"] == 6
