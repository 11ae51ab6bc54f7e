"""One demo-sized GRPO step: this project (through Lightning) vs the same work in plain PyTorch.

The plain floor does what a step must: generate G completions per prompt with the KV cache, score
them, a reference forward, a policy forward, backward, clip and AdamW. Both use the same tiny model,
prompts, G, completion budget and β > 0. Prints the median step time of each and their ratio.

    python tools/bench_step.py [--steps 30] [--warmup 5] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer

from lightning_grpo.data import RolloutDataModule
from lightning_grpo.models import eos_token_ids, load_causal_lm, load_tokenizer, save_tiny_model
from lightning_grpo.module import GRPOModule
from lightning_grpo.objectives import GRPO
from lightning_grpo.rewards import ExactInteger
from lightning_grpo.sources import Arithmetic


class StepTimer(Callback):
    """Wall time between consecutive batch ends: data, generation, scoring and update together."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.ends.append(time.perf_counter())


def bench_project(model_dir: str, args: argparse.Namespace) -> list[float]:
    timer = StepTimer()
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.warmup + args.steps + 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    module = GRPOModule(model_dir, objective=GRPO(beta=0.04), learning_rate=1e-5, log_completions_every_n_steps=0)
    data = RolloutDataModule(
        Arithmetic(), tokenizer=model_dir, prompts_per_step=args.prompts, group_size=args.group_size,
        max_new_tokens=args.max_new_tokens,
    )
    trainer.fit(module, data)
    return [b - a for a, b in zip(timer.ends, timer.ends[1:])][args.warmup :]


def bench_plain(model_dir: str, args: argparse.Namespace) -> list[float]:
    policy = load_causal_lm(model_dir).train()
    reference = load_causal_lm(model_dir).eval().requires_grad_(False)
    tokenizer = load_tokenizer(model_dir)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    table = Arithmetic().load("train")
    questions, answers = list(table["question"]), list(table["answer"])
    reward = ExactInteger()
    eos = eos_token_ids(policy, tokenizer)
    g = args.group_size
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        picks = range(step * args.prompts, (step + 1) * args.prompts)
        batch = tokenizer([questions[i] for i in picks], padding=True, return_tensors="pt", add_special_tokens=False)
        policy.eval()
        with torch.no_grad():
            seq = policy.generate(
                input_ids=batch["input_ids"].repeat_interleave(g, 0),
                attention_mask=batch["attention_mask"].repeat_interleave(g, 0),
                do_sample=True, temperature=1.0, top_k=None, top_p=None, max_new_tokens=args.max_new_tokens,
                eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
            )
        policy.train()
        tp = batch["input_ids"].shape[1]
        completion = seq[:, tp:]
        is_eos = torch.isin(completion, torch.tensor(eos))
        first = torch.where(is_eos.any(1), is_eos.int().argmax(1), completion.shape[1])
        cmask = (torch.arange(completion.shape[1]) <= first[:, None]).float()
        texts = tokenizer.batch_decode(completion, skip_special_tokens=True)
        rewards = torch.tensor(
            [reward.score_one("", t, answers[picks[i // g]], {}) for i, t in enumerate(texts)]
        ).view(-1, g)
        adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).view(-1, 1)
        attn = torch.cat([batch["attention_mask"].repeat_interleave(g, 0), cmask.long()], 1)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            ref_logits = reference(input_ids=seq, attention_mask=attn, position_ids=pos).logits[:, tp - 1 : -1]
            ref = torch.log_softmax(ref_logits.float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        logits = policy(input_ids=seq, attention_mask=attn, position_ids=pos).logits[:, tp - 1 : -1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        per_token = -torch.exp(logp - logp.detach()) * adv + 0.04 * kl
        loss = ((per_token * cmask).sum(1) / cmask.sum(1).clamp(min=1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times[args.warmup :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(save_tiny_model(Path(tmp) / "tiny"))
        plain = statistics.median(bench_plain(model_dir, args))
        project = statistics.median(bench_project(model_dir, args))
    print(f"tiny Qwen3 model, {args.prompts} prompts x G={args.group_size}, {args.max_new_tokens} new tokens, beta=0.04, "
          f"{args.threads} threads, median of {args.steps} steps")
    print(f"plain PyTorch step : {plain * 1000:8.1f} ms")
    print(f"lightning_grpo step: {project * 1000:8.1f} ms")
    print(f"ratio project/plain: {project / plain:8.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
