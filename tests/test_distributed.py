"""Two CPU processes (gloo): FSDP2 and DDP train like one process, checkpoints resume, generation keeps step.

Every test launches subprocesses (Lightning's own launcher, or ``torch.distributed.run``) running
the scripts under ``tests/distributed/`` or the CLI, on the tiny model (hidden 64, 2 layers).

Equivalence (``train_fixed.py``): the same global batch of groups, built from the rollout index
alone (no sampling), trained for 3 rollouts × 2 optimizer steps (epochs=2, so logp_old and ρ ≠ 1
are exercised; β = 0.04, so the reference model is loaded and sharded too; micro-batches of 5 rows,
which split 16 and 8 rows differently) on 1 process and on 2 (DDP, FSDP2).

Tolerance: everything is float32, and the 2-process runs differ from the 1-process run only in the
order of floating-point sums (per-rank partial gradients, then a gloo all-reduce or reduce-scatter;
different micro-batch boundaries). The normalisers are integer counts and identical. Rounding is
~1e-7 relative per operation, so losses and gradient norms are compared at rtol 1e-5, and parameters
(|θ| ≲ 0.1, each Adam step moves them by ~lr = 1e-3) at atol 1e-5: above the observed 8e-7, and 100x
below one step's movement, so a lost, duplicated or misrouted group of the batch would fail. Adam
is invariant to the gradient's scale, so a wrong world-size factor would not show in the parameters;
it shows in the (pre-clip) gradient norm, which is compared too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.distributed  # every test here starts several processes (and is also slow)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "distributed"
TIMEOUT = 300
PARAM_ATOL = 1e-5
METRIC_RTOL = 1e-5


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # 2 processes on 2 cores
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, env=_env(), stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as error:
        out = error.stdout.decode() if isinstance(error.stdout, bytes) else (error.stdout or "")
        err = error.stderr.decode() if isinstance(error.stderr, bytes) else (error.stderr or "")
        pytest.fail(f"timed out after {TIMEOUT} s: {args}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-5000:]}")
    assert result.returncode == 0, f"{args}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"
    return result


def _train_fixed(model: Path, out: Path, strategy: str, *extra: str) -> dict:
    _run(
        [sys.executable, str(SCRIPTS / "train_fixed.py"), "--model", str(model), "--out", str(out),
         "--strategy", strategy, "--max_steps", "6", *extra],
        cwd=out.parent,
    )
    info = json.loads((out / "losses.json").read_text())
    info["params"] = torch.load(out / "params.pt")
    return info


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The 1-process, DDP and FSDP2 runs (FSDP2 also saves a distributed checkpoint at step 4)."""
    base = tmp_path_factory.mktemp("dist")
    return {
        "single": _train_fixed(tiny_model_dir, base / "single", "single"),
        "ddp": _train_fixed(tiny_model_dir, base / "ddp", "ddp"),
        "fsdp2": _train_fixed(tiny_model_dir, base / "fsdp2", "fsdp2", "--save_every", "4"),
        "base": base,
    }


def _assert_same_run(got: dict, want: dict, atol: float, rtol: float) -> None:
    assert [s["global_step"] for s in got["steps"]] == [s["global_step"] for s in want["steps"]]
    for a, b in zip(got["steps"], want["steps"]):
        for key in ("train/loss", "train/grad_norm", "train/entropy"):
            assert a[key] == pytest.approx(b[key], rel=rtol, abs=1e-7), (key, a, b)
    assert set(got["params"]) == set(want["params"])
    for name, value in want["params"].items():
        torch.testing.assert_close(got["params"][name], value, atol=atol, rtol=0, msg=lambda m: f"{name}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_train_like_one(runs: dict, tiny_model_dir: Path, strategy: str) -> None:
    got, want = runs[strategy], runs["single"]
    assert got["world_size"] == 2 and want["world_size"] == 1
    assert got["sharded"] == (strategy == "fsdp2")  # FSDP2 really sharded the policy (DTensors)
    _assert_same_run(got, want, PARAM_ATOL, METRIC_RTOL)
    # ... and training did move the parameters, by much more than the tolerance
    from lightning_grpo.models import load_causal_lm

    initial = load_causal_lm(str(tiny_model_dir)).state_dict()
    moved = max((want["params"][k] - initial[k]).abs().max().item() for k in want["params"])
    assert moved > 100 * PARAM_ATOL


@pytest.fixture(scope="module")
def lora_runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The same fixed rollouts with a LoRA adapter (reference: the policy with adapters disabled), 2 rollouts."""
    base = tmp_path_factory.mktemp("dist_lora")
    extra = ("--lora", "--max_steps", "4")
    return {s: _train_fixed(tiny_model_dir, base / s, s, *extra) for s in ("single", "ddp", "fsdp2")}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_train_a_lora_adapter_like_one(lora_runs: dict, tiny_model_dir: Path, strategy: str) -> None:
    got, want = lora_runs[strategy], lora_runs["single"]
    assert got["world_size"] == 2 and got["sharded"] == (strategy == "fsdp2")
    _assert_same_run(got, want, PARAM_ATOL, METRIC_RTOL)
    from lightning_grpo.models import load_causal_lm

    initial = load_causal_lm(str(tiny_model_dir)).state_dict()
    prefix = "base_model.model."
    for name, value in want["params"].items():
        if ".lora_" not in name:  # base weights: untouched
            key = name[len(prefix):].replace(".base_layer.", ".")
            assert torch.equal(value, initial[key]), name
    lora_b = [v for k, v in want["params"].items() if ".lora_B." in k]
    assert lora_b and max(v.abs().max().item() for v in lora_b) > 100 * PARAM_ATOL  # B starts at 0: it learned


@pytest.mark.slow
def test_fsdp2_distributed_checkpoint_resumes_like_an_uninterrupted_run(runs: dict, tiny_model_dir: Path) -> None:
    ckpt = runs["base"] / "fsdp2" / "ckpt" / "step=4.ckpt"
    assert ckpt.is_dir() and list(ckpt.glob("*.distcp")), "expected a torch.distributed.checkpoint folder"
    meta = torch.load(ckpt / "meta.pt", weights_only=False)
    assert meta["global_step"] == 4
    resumed = _train_fixed(tiny_model_dir, runs["base"] / "resumed", "fsdp2", "--resume", str(ckpt))
    assert [s["global_step"] for s in resumed["steps"]] == [6]  # only the third rollout was trained
    # Same layout, same process count, deterministic CPU kernels: observed bit-identical.
    uninterrupted = dict(runs["fsdp2"], steps=runs["fsdp2"]["steps"][-1:])
    _assert_same_run(resumed, uninterrupted, atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_fsdp2_generation_keeps_ranks_in_step_and_gathers_once_per_rollout(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "generation.json"
    _run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(SCRIPTS / "generation.py"),
         str(tiny_model_dir), str(out), "2"],
        cwd=tmp_path,
    )
    ranks = json.loads(out.read_text())
    assert len(ranks) == 2
    # Rank 0 stops early (its EOS set is large), rank 1 runs to the budget: no deadlock, still correct.
    assert ranks[0]["steps_per_rank"] < ranks[1]["steps_per_rank"] == 24
    layers = ranks[0]["layers"]
    for r in ranks:
        assert r["gathered_first_equal"] and r["plain_equal"] and r["gathered_after_training_equal"], r
        assert r["resharded_on_exit"], r
        assert r["train_step_max_diff"] < 1e-6, r
        assert r["gathered_all_gathers"] == layers + 1  # once per layer and the root, per generate call
        # without the context: the root once (it stays gathered), every layer once per forward; rank 0
        # keeps joining forwards after its own completions ended (synced_gpus)
        assert r["plain_all_gathers"] == 1 + layers * ranks[1]["steps_per_rank"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "lightning_grpo.cli", *args], cwd=cwd)


def _same_question_file(path: Path, rows: int = 16) -> Path:
    path.write_text("".join(json.dumps({"problem": "12+34=", "answer": "46"}) + "\n" for _ in range(rows)))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fsdp2", "ddp"])
def test_cli_two_processes(strategy: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The demo config on 2 processes from the CLI. Every training prompt is the same question, so
    both ranks see identical prompts; their first rollouts still differ, because sampling seeds
    depend on the rank."""
    dump = tmp_path / "rollouts.json"
    data = _same_question_file(tmp_path / "same.jsonl")
    _cli(
        "fit", "--config", str(ROOT / "configs" / "demo.yaml"),
        "--config", str(ROOT / "configs" / "strategies" / f"{strategy}.yaml"),
        f"--trainer.default_root_dir={tmp_path}",  # where the CLI saves its config.yaml
        "--trainer.devices=2", "--trainer.max_steps=3", "--trainer.logger=false",
        "--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0", "--trainer.limit_val_batches=0",
        "--data.source=JsonlProblems", f"--data.source.train_path={data}",
        f"--model.model_name_or_path={tiny_model_dir}",
        "--trainer.callbacks+=tests.distributed.callbacks.RolloutDump", f"--trainer.callbacks.path={dump}",
        cwd=ROOT,
    )
    ranks = json.loads(dump.read_text())
    assert [r["rank"] for r in ranks] == [0, 1]
    expected = {"fsdp2": "FSDP2Strategy", "ddp": "DDPStrategy"}[strategy]
    assert all(r["strategy"] == expected and r["sharded"] == (strategy == "fsdp2") for r in ranks)
    assert ranks[0]["prompts"] == ranks[1]["prompts"]
    assert ranks[0]["completion_ids"] != ranks[1]["completion_ids"]


def _validate(tiny_model_dir: Path, out: Path, devices: int) -> dict:
    """`lightning-grpo validate` on 7 held-out prompts in batches of 2: 4 batches on one process; on
    two, Lightning's DistributedSampler gives each rank 4 prompts, so one prompt is evaluated twice."""
    dump = out / "validation.json"
    out.mkdir(parents=True)
    strategy = ["--config", str(ROOT / "configs" / "strategies" / "ddp.yaml")] if devices > 1 else []
    _cli(
        "validate", "--config", str(ROOT / "configs" / "demo.yaml"), *strategy,
        f"--trainer.default_root_dir={out}", f"--trainer.devices={devices}", "--trainer.logger=false",
        "--trainer.enable_progress_bar=false", f"--model.model_name_or_path={tiny_model_dir}",
        "--data.source.init_args.num_validation=7", "--data.validation.batch_size=2", "--data.validation.num_samples=2",
        "--trainer.callbacks+=tests.distributed.callbacks.ValidationDump", f"--trainer.callbacks.path={dump}",
        cwd=ROOT,
    )
    return json.loads(dump.read_text())


@pytest.mark.slow
def test_distributed_validation_counts_every_held_out_prompt_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    single = _validate(tiny_model_dir, tmp_path / "one", devices=1)
    double = _validate(tiny_model_dir, tmp_path / "two", devices=2)
    seen = [p for rank in double["prompt_ids_per_rank"] for p in rank]
    assert len(seen) == 8 and len(set(seen)) == 7  # the sampler repeated one prompt ...
    assert double["metrics"]["val/num_prompts"] == single["metrics"]["val/num_prompts"] == 7  # ... counted once
    # Greedy decoding does not depend on the layout: the same verdicts and lengths over the same prompts.
    for key in ("val/accuracy", "val/greedy_length_mean", "val/greedy_truncated_frac"):
        assert double["metrics"][key] == pytest.approx(single["metrics"][key], abs=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_ranks_whose_episodes_take_different_turns_neither_hang_nor_diverge(
    tiny_model_dir: Path, tmp_path: Path, strategy: str
) -> None:
    out = tmp_path / strategy
    _run([sys.executable, str(SCRIPTS / "train_episodes.py"), "--model", str(tiny_model_dir), "--out", str(out),
          "--strategy", strategy], cwd=tmp_path)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["steps"] for r in ranks] == [3, 3]
    assert all(t == 1.0 for t in ranks[0]["turns"]) and all(t == 3.0 for t in ranks[1]["turns"])
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-9, abs=1e-9)
