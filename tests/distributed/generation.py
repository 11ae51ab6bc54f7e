"""FSDP2 generation on 2 CPU processes (gloo): in step, correct, and gathered once per rollout.

    python -m torch.distributed.run --nproc_per_node=2 tests/distributed/generation.py MODEL_DIR OUT_JSON [REPEATS]

Each rank holds the tiny model twice: ``plain`` (unsharded, the reference) and ``sharded``
(``fully_shard_causal_lm`` over a 2-rank mesh). Checks, with rank-dependent EOS sets so that rank 0's
completions end after a few tokens and rank 1's run to the budget:

1. generate on the sharded model before any other forward, inside ``gathered_for_generation``
   (no collective per token): same sequences as the unsharded model under the same seed;
2. plain sharded generate (one all-gather per layer and token, ``synced_gpus=True``): no deadlock
   although the ranks finish at different steps, same sequences;
3. the number of all-gathers per generate call, each way;
4. a training step after gathered generation: the sharded model's updated parameters equal the
   unsharded model's (the context put FSDP's state back);
5. time per generate call, each way (mean of REPEATS calls, after one warm-up call).

Rank 0 writes the results as JSON to OUT_JSON.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from lightning_grpo.models import load_causal_lm, load_tokenizer
from lightning_grpo.sampling import HFSampler, SamplingParams
from lightning_grpo.sharding import fully_shard_causal_lm, gathered_for_generation


class GatherCounter:
    """Counts FSDP2's parameter all-gathers (its default all-gather calls ``dist.all_gather_single``)."""

    def __init__(self) -> None:
        self.count = 0
        self._orig = dist.all_gather_single

    def __enter__(self) -> "GatherCounter":
        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.count += 1
            return self._orig(*args, **kwargs)

        dist.all_gather_single = counting
        return self

    def __exit__(self, *exc: object) -> None:
        dist.all_gather_single = self._orig


def main() -> None:
    model_dir, out_path = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # a deadlock fails within a minute
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    tokenizer = load_tokenizer(model_dir)
    plain = load_causal_lm(model_dir)
    sharded = fully_shard_causal_lm(load_causal_lm(model_dir), mesh)
    layers = sharded.config.num_hidden_layers

    sampler, params = HFSampler(), SamplingParams(num_samples=4, max_new_tokens=24, temperature=1.0)
    prompts = tokenizer([f"{rank + 3}+{rank + 40}=", "7+8="], padding=True, return_tensors="pt", add_special_tokens=False)
    # Rank 0 stops on any of 40 ids (its completions end within a few tokens); rank 1 only on EOS.
    eos_ids = sorted({tokenizer.eos_token_id, *range(3, 43)}) if rank == 0 else [tokenizer.eos_token_id]
    pad_id = tokenizer.pad_token_id

    def sample(model: torch.nn.Module, seed: int) -> tuple[torch.Tensor, float]:
        torch.manual_seed(seed)
        start = time.perf_counter()
        sequences = sampler.sample(model, prompts["input_ids"], prompts["attention_mask"], params, eos_ids, pad_id).sequences
        return sequences, time.perf_counter() - start

    results: dict[str, object] = {"world_size": world, "layers": layers}
    seed = 1000 + rank
    expected, _ = sample(plain, seed)

    # 1. gathered, as the very first forward of the sharded model
    with GatherCounter() as counter, gathered_for_generation(sharded):
        got, _ = sample(sharded, seed)
    results["gathered_first_equal"] = bool(torch.equal(got, expected))
    results["resharded_on_exit"] = all(type(p).__name__ == "DTensor" for p in sharded.parameters())
    results["gathered_all_gathers"] = counter.count
    results["steps_per_rank"] = int(expected.shape[1] - prompts["input_ids"].shape[1])

    # 2. plain sharded generate: per-token gathers, ranks finish at different steps
    with GatherCounter() as counter:
        got, _ = sample(sharded, seed)
    results["plain_equal"] = bool(torch.equal(got, expected))
    results["plain_all_gathers"] = counter.count

    # 3. a training step after gathered generation matches the unsharded model's
    with gathered_for_generation(sharded):
        sample(sharded, seed)
    batch = torch.randint(3, len(tokenizer), (2, 10), generator=torch.Generator().manual_seed(5))  # same on all ranks
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.5)
    opt_sharded = torch.optim.SGD(sharded.parameters(), lr=0.5)
    for model, opt in ((plain, opt_plain), (sharded, opt_sharded)):
        model.train()
        loss = model(input_ids=batch, labels=batch).loss  # identical batch on every rank: mean grad == local grad
        loss.backward()
        opt.step()
        opt.zero_grad()
    full = {n: p.full_tensor() for n, p in sharded.named_parameters()}
    results["train_step_max_diff"] = max((full[n] - p).abs().max().item() for n, p in plain.named_parameters())
    with gathered_for_generation(sharded):
        got, _ = sample(sharded, seed)
    expected, _ = sample(plain, seed)
    results["gathered_after_training_equal"] = bool(torch.equal(got, expected))

    # 4. timing (rank 1 runs every step to the budget; the slowest rank sets the pace)
    eos_ids = [tokenizer.eos_token_id]  # time full-length generation on both ranks
    timings: dict[str, list[float]] = {"unsharded": [], "fsdp2_per_token_gather": [], "fsdp2_gathered_once": []}
    sample(sharded, seed)  # warm-up
    for i in range(repeats):
        dist.barrier()
        timings["unsharded"].append(sample(plain, seed + i)[1])
        dist.barrier()
        timings["fsdp2_per_token_gather"].append(sample(sharded, seed + i)[1])
        dist.barrier()
        start = time.perf_counter()
        with gathered_for_generation(sharded):
            sample(sharded, seed + i)
        timings["fsdp2_gathered_once"].append(time.perf_counter() - start)
    results["generate_s_mean"] = {k: sum(v) / len(v) for k, v in timings.items()}
    results["generate_rows"] = int(prompts["input_ids"].shape[0] * params.num_samples)
    results["generate_new_tokens"] = params.max_new_tokens

    gathered = [None] * world
    dist.all_gather_object(gathered, results)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(gathered, f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
