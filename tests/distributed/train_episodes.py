"""Multi-turn episodes on 2 processes: ranks whose episodes take different numbers of turns.

Rank r's episodes run 1 + 2r turns (rank 0: single turn; rank 1: three), so one rank samples three
times as often as the other in every rollout, with dynamic sampling on (its decision to go on is taken
over all ranks). Each rank writes its turns per step and a checksum of its policy's parameters; the
test checks that the run finishes (no hang), that the ranks really differed, and that their weights
are the same (DDP / FSDP2 keep one model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_grpo.data import RolloutDataModule
from lightning_grpo.dynamic_sampling import DynamicSampling
from lightning_grpo.environments import Environment, EnvReply
from lightning_grpo.module import GRPOModule
from lightning_grpo.module_settings import Logging, Optimization
from lightning_grpo.objectives import GRPO
from lightning_grpo.rewards import RewardFunction
from lightning_grpo.rollout_engine import RolloutEngine
from lightning_grpo.sampling import Sampling
from lightning_grpo.demo.arithmetic import Arithmetic


class RankTurns(Environment):
    max_turns = 3

    def step(self, states: list[Any], turns: list[str], turn_number: int) -> list[EnvReply]:
        rank = dist.get_rank() if dist.is_initialized() else 0
        return [EnvReply(done=turn_number >= 1 + 2 * rank, message=" ok ", cut_at=min(len(t), 2)) for t in turns]


class DigitShare(RewardFunction):
    def __init__(self) -> None:
        super().__init__(name="digits")

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
        return float(sum(c.isdigit() for c in completion) > 1)


class Recorder(Callback):
    def __init__(self, out: Path) -> None:
        self.out, self.turns = out, []

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.turns.append(batch.stats["episode/turns"] / batch.stats["episode/count"])

    def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:
        params = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in pl_module.policy.parameters()]
        checksum = float(sum((p.detach().double() * (i + 1)).sum() for i, p in enumerate(params)))
        info = {"rank": trainer.global_rank, "steps": trainer.global_step, "turns": self.turns, "checksum": checksum}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(info))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", choices=["ddp", "fsdp2"], default="ddp")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(0)
    if args.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        strategy: Any = DDPStrategy(find_unused_parameters=False)
    else:
        from lightning_grpo.strategies import FSDP2Strategy

        strategy = FSDP2Strategy()
    trainer = Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=3, max_epochs=-1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0, callbacks=[Recorder(out)])
    module = GRPOModule(args.model, objective=GRPO(beta=0.0), optimizer=Optimization(learning_rate=1e-3),
                        logging=Logging(log_completions_every_n_steps=0))
    engine = RolloutEngine(group_size=4, sampling=Sampling(max_new_tokens=4), environment=RankTurns(),
                           rewards=[DigitShare()], dynamic_sampling=DynamicSampling(max_extra_rounds=2), max_episode_tokens=40)
    data = RolloutDataModule(Arithmetic(num_train=64), tokenizer=args.model, prompts_per_step=4, rollout=engine)
    trainer.fit(module, data)


if __name__ == "__main__":
    main()
