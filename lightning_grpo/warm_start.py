"""Supervised warm start: build a tiny Qwen3 model and teach it the task's answer format.

A randomly initialised model never answers correctly, so GRPO would see no reward signal. The demo
therefore starts from a checkpoint made here: a tiny Qwen3-config model with the offline character
tokenizer, trained briefly with next-token cross-entropy on ``prompt + solution + EOS`` from the same
prompt source, then saved with ``save_pretrained`` where the policy is loaded from. The run stops
early enough that the model is right only part of the time, leaving GRPO something to learn.

How good the starting policy is decides whether GRPO has anything to do: a model that is never right
gives no reward signal, and one that is nearly always right leaves nothing to gain. A fixed number of
supervised steps lands in very different places for different seeds (on the tiny model, the step at
which two-number addition "clicks" varies two- to three-fold between seeds), so ``target_accuracy`` can stop the
run instead once the model's *sampled* accuracy (temperature 1, the policy GRPO starts from) on
held-out prompts reaches the target; ``steps`` is then only the cap.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

from lightning_grpo.models import build_char_tokenizer, build_tiny_qwen3
from lightning_grpo.rewards.base import RewardFunction
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.sources import PromptSource


class WarmStart:
    def __init__(
        self,
        steps: int = 300,
        batch_size: int = 64,
        learning_rate: float = 3e-3,
        hidden_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        num_kv_heads: int = 2,
        intermediate_size: int = 384,
        max_position_embeddings: int = 256,
        prompt_template: str = "{question}",
        label_noise: float = 0.0,
        target_accuracy: float | None = None,
        eval_every: int = 50,
        eval_prompts: int = 128,
        seed: int = 0,
        reward: RewardFunction | None = None,
    ) -> None:
        """
        Args:
            steps: supervised optimizer steps (the knob that sets how good the starting policy is).
            batch_size: examples per step.
            learning_rate: AdamW learning rate, with linear decay to 0.
            hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size, max_position_embeddings:
                the Qwen3 config of the tiny model.
            prompt_template: how a question becomes a prompt; must match the data module's.
            label_noise: probability that a training target has one digit changed: the model then
                imitates an unreliable teacher, right on average but often wrong when sampled, and
                the verifiable reward is what tells GRPO which of its answers are right.
            target_accuracy: stop as soon as the sampled accuracy (temperature 1, judged by ``reward``)
                on ``eval_prompts`` held-out prompts reaches this; ``None``:
                always run ``steps`` steps. The learning-rate decay still spans ``steps``.
            eval_every: supervised steps between two accuracy checks (with ``target_accuracy``).
            eval_prompts: prompts in the check (the source's validation split, else its train split).
            seed: initialisation, data order and the check's sampling.
            reward: the correctness reward of the accuracy check (default: exact integer match).
        """
        if not 0.0 <= label_noise < 1.0:
            raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
        if steps < 0 or batch_size < 1 or learning_rate <= 0:
            raise ValueError(f"need steps >= 0, batch_size >= 1, learning_rate > 0; got {steps}, {batch_size}, {learning_rate}")
        if target_accuracy is not None and not 0.0 < target_accuracy <= 1.0:
            raise ValueError(f"target_accuracy must be in (0, 1] or None, got {target_accuracy}")
        if eval_every < 1 or eval_prompts < 1:
            raise ValueError(f"need eval_every >= 1 and eval_prompts >= 1; got {eval_every}, {eval_prompts}")
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.sizes = dict(
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
        )
        self.prompt_template = prompt_template
        self.label_noise = label_noise
        self.target_accuracy = target_accuracy
        self.eval_every = eval_every
        self.eval_prompts = eval_prompts
        self.seed = seed
        self.reward = reward if reward is not None else ExactInteger()
        self.steps_done = 0
        self.accuracy: dict[str, float] = {}

    def run(self, output_dir: str, source: PromptSource) -> None:
        """Build, train and save the model at ``output_dir`` unless a model is already there."""
        out = Path(output_dir)
        if (out / "config.json").exists():
            return
        if int(os.environ.get("LOCAL_RANK", "0")) != 0:
            _wait_for(out / "config.json")
            return
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tokenizer = build_char_tokenizer()
        model = build_tiny_qwen3(tokenizer, seed=self.seed, **self.sizes)
        start = time.perf_counter()
        loss = self.train(model, tokenizer, source)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(out)
        accuracy = ", ".join(f"{k} accuracy {v:.2f}" for k, v in self.accuracy.items())
        print(
            f"warm start: {self.steps_done} supervised steps in {time.perf_counter() - start:.0f} s, final loss "
            f"{loss:.3f}{', ' + accuracy if accuracy else ''} -> {out}"
        )

    def train(self, model: torch.nn.Module, tokenizer, source: PromptSource) -> float:  # type: ignore[no-untyped-def]
        table = source.load("train")
        examples = [
            (self.prompt_template.format(question=q), s) for q, s in zip(table["question"], table["solution"])
        ]
        probe = self._probe(source, tokenizer) if self.target_accuracy is not None else None
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.learning_rate, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / max(self.steps, 1))
        model.train()
        loss = torch.tensor(float("nan"))
        self.steps_done, self.accuracy, sampled = 0, {}, float("nan")
        for step in range(1, self.steps + 1):
            picks = torch.randint(len(examples), (self.batch_size,), generator=generator).tolist()
            noisy = (torch.rand(self.batch_size, generator=generator) < self.label_noise).tolist()
            pairs = [(examples[i][0], _change_a_digit(examples[i][1], generator) if n else examples[i][1]) for i, n in zip(picks, noisy)]
            input_ids, labels = _supervised_batch(pairs, tokenizer)
            loss = model(input_ids=input_ids, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            self.steps_done = step
            if probe is not None and (step % self.eval_every == 0 or step == self.steps):
                sampled = _accuracy(model, tokenizer, *probe, self.reward, sample=True, seed=self.seed + step)
                if sampled >= self.target_accuracy:  # type: ignore[operator]
                    break
        model.eval()
        if probe is not None:
            if self.steps_done == 0:
                sampled = _accuracy(model, tokenizer, *probe, self.reward, sample=True, seed=self.seed)
            self.accuracy = {"sampled": sampled, "greedy": _accuracy(model, tokenizer, *probe, self.reward, sample=False, seed=0)}
        return float(loss.detach())

    def _probe(self, source: PromptSource, tokenizer) -> tuple[torch.Tensor, torch.Tensor, list[str], int]:  # type: ignore[no-untyped-def]
        """Left-padded ids [n, T], attention mask [n, T], golds and completion budget of the accuracy check."""
        try:
            table = source.load("validation")
        except (ValueError, FileNotFoundError):
            table = source.load("train")
        if len(table) == 0:
            table = source.load("train")
        n = min(self.eval_prompts, len(table))
        prompts = [self.prompt_template.format(question=q) for q in table["question"][:n]]
        rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(len(r) for r in rows)
        input_ids = torch.full((n, width), tokenizer.pad_token_id)
        attention_mask = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r) :] = torch.tensor(r)
            attention_mask[i, width - len(r) :] = 1
        targets = list(table["answer"][:n]) + list(table["solution"][:n])  # the gold need not be the answer text
        budget = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets) + 2
        return input_ids, attention_mask, list(table["answer"][:n]), budget


@torch.no_grad()
def _accuracy(model, tokenizer, input_ids, attention_mask, golds, budget, reward, sample: bool, seed: int) -> float:  # type: ignore[no-untyped-def]
    """Fraction of prompts whose completion (temperature 1 or greedy, ``budget`` new tokens) ``reward`` finds correct."""
    was_training = model.training
    model.eval()
    sampling = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0) if sample else dict(do_sample=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=budget,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
    model.train(was_training)
    texts = tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)
    return sum(reward.score_one("", t, g, {}) == reward.correct_value for t, g in zip(texts, golds)) / len(golds)


def _change_a_digit(text: str, generator: torch.Generator) -> str:
    """``text`` with one of its digits replaced by a different digit (unchanged if it has none)."""
    positions = [i for i, ch in enumerate(text) if ch.isdigit()]
    if not positions:
        return text
    i = positions[int(torch.randint(len(positions), (1,), generator=generator))]
    shift = int(torch.randint(1, 10, (1,), generator=generator))
    return text[:i] + str((int(text[i]) + shift) % 10) + text[i + 1 :]


def _supervised_batch(pairs: list[tuple[str, str]], tokenizer) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Right-padded ids [B, T] and labels [B, T] with the loss on the solution and its EOS only."""
    rows, targets = [], []
    for prompt, solution in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        s = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p + s)
        targets.append([-100] * len(p) + s)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, (r, t) in enumerate(zip(rows, targets)):
        input_ids[i, : len(r)] = torch.tensor(r)
        labels[i, : len(t)] = torch.tensor(t)
    return input_ids, labels


def _wait_for(path: Path, timeout_s: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not write the warm-start model {path} within {timeout_s:.0f} s")
        time.sleep(1.0)
