"""Train GRPOModule for a few steps on fixed rollouts, on 1 process or 2 (DDP / FSDP2), and dump results.

    python tests/distributed/train_fixed.py --model DIR --out DIR --strategy {single,ddp,fsdp2}
        [--devices N] [--max_steps S] [--save_every K] [--resume CKPT] [--lora]

Lightning's own launcher starts the other processes (it re-runs this script). The rollouts do not
come from sampling: :class:`FixedRollouts` builds rollout k's *global* batch of groups from seed
k alone (random left-padded prompts, random completions with EOS at random places, random rewards)
and each rank takes its contiguous slice of the groups, so every layout sees the same global batch.

Writes (rank 0) ``OUT/losses.json`` (per-step global train/loss, grad norm, entropy) and
``OUT/params.pt`` (the policy's full state dict, gathered from the shards under FSDP2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_grpo.data import RolloutDataModule
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rollout_engine import RolloutEngine
from lightning_grpo.module import GRPOModule
from lightning_grpo.module_settings import Logging, Optimization, UpdateLoop
from lightning_grpo.objectives.grpo import GRPO
from lightning_grpo.rollout import Rollout
from lightning_grpo.sampling import completion_mask_from_ids
from lightning_grpo.demo.arithmetic import Arithmetic

PROMPTS_PER_STEP = 4  # global groups per rollout
GROUP_SIZE = 4
PROMPT_LEN = 6
MAX_NEW_TOKENS = 8


def global_rollout(index: int, vocab: int, eos_id: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Rollout ``index``'s global batch: depends on the index only, never on ranks or devices."""
    gen = torch.Generator().manual_seed(10_000 + index)
    p, g, n = PROMPTS_PER_STEP, GROUP_SIZE, PROMPTS_PER_STEP * GROUP_SIZE
    low = 3  # skip pad / eos / bos
    prompt = torch.randint(low, vocab, (p, PROMPT_LEN), generator=gen)
    prompt_len = torch.randint(2, PROMPT_LEN + 1, (p,), generator=gen)
    prompt_mask = (torch.arange(PROMPT_LEN).unsqueeze(0) >= (PROMPT_LEN - prompt_len).unsqueeze(1)).long()
    prompt = torch.where(prompt_mask.bool(), prompt, torch.full_like(prompt, pad_id))  # left-padded
    completion = torch.randint(low, vocab, (n, MAX_NEW_TOKENS), generator=gen)
    eos_at = torch.randint(1, MAX_NEW_TOKENS + 3, (n,), generator=gen)  # > MAX_NEW_TOKENS - 1: truncated
    rows = torch.arange(n)[eos_at < MAX_NEW_TOKENS]
    completion[rows, eos_at[rows]] = eos_id
    rewards = torch.randint(0, 3, (n,), generator=gen).float()  # mixed, with some zero-variance groups
    return {"prompt": prompt, "prompt_mask": prompt_mask, "completion": completion, "rewards": rewards}


class FixedRollouts(RolloutEngine):
    """The rollout engine replaced: rollout k is a slice of :func:`global_rollout` (k), whatever was sampled."""

    def __init__(self, world_size: int) -> None:
        super().__init__(group_size=GROUP_SIZE, rewards=[ExactInteger()])  # rewards unused: collect is replaced
        self.world_size = world_size

    def collect(self, policy: Any, batch: dict[str, Any], more_prompts: Any) -> Rollout:
        tok = self.tokenizer
        data = global_rollout(self.rounds_sampled, len(tok), tok.eos_token_id, tok.pad_token_id)
        self.rounds_sampled += 1
        world = self.world_size
        rank = self.rank
        p = PROMPTS_PER_STEP // world
        g = GROUP_SIZE
        groups = slice(rank * p, (rank + 1) * p)
        rows = slice(rank * p * g, (rank + 1) * p * g)
        device = batch["input_ids"].device
        prompt = data["prompt"][groups].repeat_interleave(g, dim=0)
        prompt_mask = data["prompt_mask"][groups].repeat_interleave(g, dim=0)
        completion = data["completion"][rows]
        completion_mask, truncated = completion_mask_from_ids(completion, [tok.eos_token_id])
        rewards = data["rewards"][rows]
        n = completion.shape[0]
        return Rollout(
            input_ids=torch.cat([prompt, completion], dim=1).to(device),
            attention_mask=torch.cat([prompt_mask, completion_mask], dim=1).to(device),
            completion_mask=completion_mask.to(device),
            truncated=truncated.to(device),
            rewards=rewards.to(device),
            reward_components={"fixed": rewards.to(device)},
            group_ids=(torch.arange(n) // g).to(device),
            group_size=g,
            prompt_length=PROMPT_LEN,
            temperature=self.sampling.temperature,
            max_new_tokens=MAX_NEW_TOKENS,
            prompts=[""] * p,
            completions=[""] * n,
            golds=[""] * p,
        )


class Recorder(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.steps: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        metrics = trainer.callback_metrics
        self.steps.append(
            {
                "global_step": trainer.global_step,
                **{k: float(metrics[k]) for k in ("train/loss", "train/grad_norm", "train/entropy") if k in metrics},
            }
        )

    def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:
        state = full_policy_state(pl_module.policy)  # collective under FSDP2: every rank calls it
        info = {
            "steps": self.steps,
            "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__,
            "sharded": any(type(p).__name__ == "DTensor" for p in pl_module.policy.parameters()),
        }
        if trainer.global_rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            torch.save(state, self.out / "params.pt")
            (self.out / "losses.json").write_text(json.dumps(info, indent=1))


def full_policy_state(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if any(type(p).__name__ == "DTensor" for p in policy.parameters()):
        state = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = policy.state_dict()
    return {k: v.detach().clone().cpu() for k, v in state.items()}


def lora_config():  # type: ignore[no-untyped-def]
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", choices=["single", "ddp", "fsdp2"], required=True)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--max_steps", type=int, default=3)
    parser.add_argument("--save_every", type=int, default=0)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (reference: adapters disabled)")
    args = parser.parse_args()
    out = Path(args.out)

    seed_everything(0)
    if args.strategy == "single":
        strategy, devices = "auto", 1
    elif args.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        strategy, devices = DDPStrategy(find_unused_parameters=False), args.devices
    else:
        from lightning_grpo.strategies import FSDP2Strategy

        strategy, devices = FSDP2Strategy(), args.devices
    callbacks: list[Callback] = [Recorder(out)]
    if args.save_every:
        callbacks.append(
            ModelCheckpoint(dirpath=out / "ckpt", filename="{step}", every_n_train_steps=args.save_every, save_top_k=-1)
        )
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_steps=args.max_steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=bool(args.save_every),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    model = GRPOModule(
        args.model,
        objective=GRPO(beta=0.04),  # β > 0: the reference model is loaded (and sharded) too
        optimizer=Optimization(learning_rate=1e-3, max_grad_norm=1.0),
        # two optimizer steps per rollout: logp_old is computed and ρ ≠ 1 in the second; micro-batches of 5
        # do not divide a rank's rows evenly on purpose
        update=UpdateLoop(epochs=2, micro_batch_size=5),
        logging=Logging(log_completions_every_n_steps=0),
        peft=lora_config() if args.lora else None,
    )
    data = RolloutDataModule(
        source=Arithmetic(num_train=64),  # the prompts are ignored; only the loader's length matters
        prompts_per_step=PROMPTS_PER_STEP,
        rollout=FixedRollouts(trainer.world_size),
        tokenizer=args.model,
    )
    trainer.fit(model, datamodule=data, ckpt_path=args.resume)


if __name__ == "__main__":
    main()
