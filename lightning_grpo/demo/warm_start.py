"""Supervised warm start: build a tiny Qwen3 model and teach it the task's answer format.

A randomly initialised model never answers correctly, so GRPO would see no reward signal. The demo
therefore starts from a checkpoint made here: a tiny Qwen3-config model with the offline character
tokenizer, trained briefly with next-token cross-entropy on ``prompt + solution + EOS`` from the same
prompt source in a Lightning run of its own (progress bar, TensorBoard logs and a last checkpoint
beside the model, in ``<output_dir>_logs``), then saved with ``save_pretrained`` at ``output_dir``,
where the demo's policy is loaded from, with ``warm_start.json`` beside it: the settings it was built
with (steps, target, seed, model sizes, task, ...), its steps and accuracy. A later run reuses the model
only when its own settings are the same (and says so, naming the folder); with other settings it builds
the model again in the same folder and says which settings differ. It builds nothing at any other path.
The run stops early enough that the model is right only part of the time, leaving GRPO something to learn.

How good the starting policy is decides whether GRPO has anything to do: a model that is never right
gives no reward signal, and one that is nearly always right leaves nothing to gain. A fixed number of
supervised steps lands in very different places for different seeds (on the tiny model, the step at
which two-number addition "clicks" varies two- to three-fold between seeds), so ``target_accuracy`` can stop the
run instead once the model's *sampled* accuracy (temperature 1, the policy GRPO starts from) on
held-out prompts reaches the target; ``steps`` is then only the cap.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from transformers import PreTrainedTokenizerBase

from lightning_grpo.callbacks import step_progress_bar
from lightning_grpo.demo.tiny_model import TinyModelShape, build_char_tokenizer, build_tiny_qwen3
from lightning_grpo.preparation import RunPreparation
from lightning_grpo.rewards.base import RewardFunction
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.sources import PromptSource

RECORD_NAME = "warm_start.json"  # beside the model: the settings it was built with, its steps and accuracy


class WarmStart(RunPreparation):
    def __init__(
        self,
        output_dir: str = "runs/demo/warm_start",
        steps: int = 300,
        batch_size: int = 64,
        learning_rate: float = 3e-3,
        model: TinyModelShape = TinyModelShape(),
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
            output_dir: where the demo model is built and saved; the warm start runs only when the
                run's ``model.model_name_or_path`` is this path and no model with the same settings is there yet.
            steps: supervised optimizer steps (the knob that sets how good the starting policy is).
            batch_size: examples per step.
            learning_rate: AdamW learning rate, with linear decay to 0.
            model: the Qwen3 config sizes of the tiny model (hidden_size, num_layers, num_heads,
                num_kv_heads, intermediate_size, max_position_embeddings).
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
        self.output_dir = output_dir
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.sizes = asdict(model)
        self.prompt_template = prompt_template
        self.label_noise = label_noise
        self.target_accuracy = target_accuracy
        self.eval_every = eval_every
        self.eval_prompts = eval_prompts
        self.seed = seed
        self.reward = reward if reward is not None else ExactInteger()
        self.steps_done = 0
        self.accuracy: dict[str, float] = {}

    def settings(self, source: PromptSource | None) -> dict[str, Any]:
        """Everything that decides the model this warm start builds, as plain JSON values (its record's key)."""
        settings = {
            "steps": self.steps, "batch_size": self.batch_size, "learning_rate": self.learning_rate, "model": self.sizes,
            "prompt_template": self.prompt_template, "label_noise": self.label_noise,
            "target_accuracy": self.target_accuracy, "eval_every": self.eval_every, "eval_prompts": self.eval_prompts,
            "seed": self.seed, "reward": _describe(self.reward), "source": _describe(source),
        }
        return json.loads(json.dumps(settings))  # tuples as lists, as the record reads back

    def prepare(self, model_name_or_path: str, source: PromptSource | None) -> None:
        """Build, train and save the demo model at ``output_dir`` if the run's policy is that path, unless the
        model there was built with the same settings (its ``warm_start.json``); with other settings it is
        built again in the same folder, and the log says which settings differ.

        Never builds anywhere else: a policy path other than ``output_dir`` (a hub id, the user's own
        checkpoint) is left alone and the warm start says so.
        """
        out = Path(self.output_dir)
        if Path(model_name_or_path).expanduser().resolve() != out.expanduser().resolve():
            rank_zero_info(
                f"warm start skipped: it builds the demo model at {self.output_dir!r} only, and the policy is "
                f"{model_name_or_path!r} (remove the warm_start section to silence this)"
            )
            return
        settings = self.settings(source)
        built = (out / "config.json").exists()
        record = _read_record(out)
        if built and record is None:
            rank_zero_warn(
                f"warm start: reusing the model at {out}, which has no {RECORD_NAME} saying how it was built (an older "
                f"version made it), so it may not match this config's warm start: delete {out} to build it again"
            )
            return
        if built and record.get("settings") == settings:
            done = record.get("steps_done")
            accuracy = ", ".join(f"{k} accuracy {v:.2f}" for k, v in (record.get("accuracy") or {}).items())
            rank_zero_info(
                f"warm start: reusing the demo model at {out}, built with this config's settings ({_summary(settings)}"
                f"{f'; {done} supervised steps' if done is not None else ''}{', ' + accuracy if accuracy else ''}; "
                f"recorded in {out / RECORD_NAME})"
            )
            return
        if int(os.environ.get("LOCAL_RANK", "0")) != 0:
            _wait_for(out, settings)
            return
        if built:
            rank_zero_info(
                f"warm start: the model at {out} was built with other settings ({_differences(record['settings'], settings)}): "
                "building it again with this config's"
            )
        self._build(out, source, settings)

    def _build(self, out: Path, source: PromptSource | None, settings: dict[str, Any]) -> None:
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tokenizer = build_char_tokenizer()
        model = build_tiny_qwen3(tokenizer, seed=self.seed, **self.sizes)
        rank_zero_info(
            f"warm start: building the demo model at {out}: a randomly initialised Qwen3 of "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters with a character tokenizer, then "
            f"supervised on the task for up to {self.steps} steps"
            + (f" (stopping at {self.target_accuracy:.0%} sampled accuracy)" if self.target_accuracy else "")
        )
        start = time.perf_counter()
        loss = self.train(model, tokenizer, source, log_dir=out.with_name(out.name + "_logs"))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {"settings": settings, "steps_done": self.steps_done, "accuracy": self.accuracy, "final_loss": loss}
        (tmp / RECORD_NAME).write_text(json.dumps(record, indent=1) + "\n")
        old = out.with_name(out.name + ".old")
        if out.exists():  # built with other settings: replaced only once the new one is complete
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        accuracy = ", ".join(f"{k} accuracy {v:.2f}" for k, v in self.accuracy.items())
        rank_zero_info(
            f"warm start: {self.steps_done} supervised steps in {time.perf_counter() - start:.0f} s, final loss "
            f"{loss:.3f}{', ' + accuracy if accuracy else ''} -> {out} (settings in {out / RECORD_NAME})"
        )

    def train(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, source: PromptSource, log_dir: Path | None = None) -> float:
        """Supervise ``model`` in a Lightning run (progress bar, TensorBoard logs and a last checkpoint in ``log_dir``)."""
        table = source.load("train")
        examples = [(self.prompt_template.format(question=q), s) for q, s in zip(table["question"], table["solution"])]
        probe = self._probe(source, tokenizer) if self.target_accuracy is not None else None
        task = SupervisedWarmStart(model, tokenizer, self, probe)
        stream = NoisyExamples(examples, tokenizer, self.batch_size, self.label_noise, self.seed)
        trainer = Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=self.steps,
            gradient_clip_val=1.0,
            logger=TensorBoardLogger(str(log_dir.parent), name=log_dir.name) if log_dir is not None else False,
            enable_checkpointing=log_dir is not None,
            callbacks=[step_progress_bar()]
            + ([ModelCheckpoint(dirpath=str(log_dir / "checkpoints"), save_last=True, save_top_k=0)] if log_dir else []),
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=10,
            default_root_dir=str(log_dir) if log_dir is not None else None,
        )
        if self.steps > 0:
            trainer.fit(task, train_dataloaders=DataLoader(stream, batch_size=None))
        self.steps_done = trainer.global_step
        model.eval()
        if probe is not None:
            sampled = task.last_sampled
            if self.steps_done == 0 or sampled is None:
                sampled = _accuracy(model, tokenizer, *probe, self.reward, sample=True, seed=self.seed)
            self.accuracy = {"sampled": sampled, "greedy": _accuracy(model, tokenizer, *probe, self.reward, sample=False, seed=0)}
        return task.last_loss

    def _probe(self, source: PromptSource, tokenizer) -> tuple[torch.Tensor, torch.Tensor, list[str]]:  # type: ignore[no-untyped-def]
        """Left-padded ids [n, T], attention mask [n, T] and golds of the accuracy check's prompts."""
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
        return input_ids, attention_mask, list(table["answer"][:n])


@torch.no_grad()
def _accuracy(model, tokenizer, input_ids, attention_mask, golds, reward, sample: bool, seed: int) -> float:  # type: ignore[no-untyped-def]
    """Fraction of prompts whose completion (temperature 1 or greedy) ``reward`` finds correct."""
    was_training = model.training
    model.eval()
    # As long as the gold's text: the bare integer, or Countdown's "target|numbers", longer than its expressions.
    budget = max(len(tokenizer(g, add_special_tokens=False)["input_ids"]) for g in golds) + 2
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


def _wait_for(out: Path, settings: dict[str, Any], timeout_s: float = 1800.0) -> None:
    """Until rank 0 has written the warm-start model with these settings at ``out``."""
    deadline = time.monotonic() + timeout_s
    while not ((out / "config.json").exists() and (_read_record(out) or {}).get("settings") == settings):
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not write the warm-start model {out} within {timeout_s:.0f} s")
        time.sleep(1.0)


def _read_record(out: Path) -> dict[str, Any] | None:
    """The warm start's record beside its model (None when there is none)."""
    path = out / RECORD_NAME
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"the warm start's record {path} is not valid JSON ({error}): delete {out} to build it again") from error
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise ValueError(f"the warm start's record {path} has no 'settings' mapping: delete {out} to build it again")
    return record


def _describe(value: Any) -> Any:
    """A reward or prompt source as its class path and its public attributes (JSON values; objects by class)."""
    if value is None:
        return None
    fields = {}
    for key, item in sorted(vars(value).items()):
        if key.startswith("_"):
            continue
        try:
            fields[key] = json.loads(json.dumps(item))
        except (TypeError, ValueError):  # an object: its class only (a repr may hold a memory address)
            fields[key] = f"<{type(item).__module__}.{type(item).__qualname__}>"
    return {"class_path": f"{type(value).__module__}.{type(value).__qualname__}", "init_args": fields}


def _summary(settings: dict[str, Any]) -> str:
    keys = ("steps", "target_accuracy", "label_noise", "learning_rate", "batch_size", "seed")
    return ", ".join(f"{k} {settings[k]}" for k in keys)


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    """``key recorded -> current`` for each top-level setting that differs."""
    keys = sorted(set(recorded) | set(current))
    return "; ".join(f"{k} {recorded.get(k)!r} -> {current.get(k)!r}" for k in keys if recorded.get(k) != current.get(k))


class NoisyExamples(IterableDataset):
    """Endless supervised batches (input ids, labels) of ``batch_size`` examples, a share with a digit changed."""

    def __init__(
        self, examples: list[tuple[str, str]], tokenizer: PreTrainedTokenizerBase, batch_size: int, label_noise: float, seed: int
    ) -> None:
        self.examples, self.tokenizer = examples, tokenizer
        self.batch_size, self.label_noise, self.seed = batch_size, label_noise, seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            picks = torch.randint(len(self.examples), (self.batch_size,), generator=generator).tolist()
            noisy = (torch.rand(self.batch_size, generator=generator) < self.label_noise).tolist()
            pairs = [
                (self.examples[i][0], _change_a_digit(self.examples[i][1], generator) if n else self.examples[i][1])
                for i, n in zip(picks, noisy)
            ]
            yield _supervised_batch(pairs, self.tokenizer)  # [B, T] each


class SupervisedWarmStart(LightningModule):
    """Next-token cross-entropy on prompt + solution + EOS; stops once the sampled accuracy reaches the target."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        config: WarmStart,
        probe: tuple[torch.Tensor, torch.Tensor, list[str]] | None,
    ) -> None:
        super().__init__()
        self.model, self.tokenizer, self.config, self.probe = model, tokenizer, config, probe
        self.last_loss = float("nan")
        self.last_sampled: float | None = None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        input_ids, labels = batch  # [B, T] each
        loss = self.model(input_ids=input_ids, labels=labels).loss
        self.last_loss = float(loss.detach())
        self.log("warm_start/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        step, config = self.global_step, self.config
        if self.probe is None or not (step % config.eval_every == 0 or step == config.steps):
            return
        self.last_sampled = _accuracy(self.model, self.tokenizer, *self.probe, config.reward, sample=True, seed=config.seed + step)
        self.log("warm_start/sampled_accuracy", self.last_sampled, prog_bar=True)
        if self.last_sampled >= config.target_accuracy:  # type: ignore[operator]
            self.trainer.should_stop = True

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.learning_rate, weight_decay=0.0)
        total = max(self.config.steps, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
