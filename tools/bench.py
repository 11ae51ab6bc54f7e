"""One GRPO step three ways, on the same models, prompts and budget: this project, TRL, plain PyTorch.

* ``project``: ``GRPOModule`` + ``RolloutDataModule`` through a Lightning ``Trainer`` (GroupSampler
  backend ``--sampler``, ``fast`` by default; the extra variant ``project_hf`` is the project with the
  HF-generate sampler, what TRL and the floor use).
* ``trl``: TRL's ``GRPOTrainer`` (optional: ``pip install trl``, the ``bench`` extra; skipped with a
  message when it is not installed), configured to do the same work (see :func:`trl_config`).
* ``floor``: the plain-PyTorch floor: HF ``generate`` with the KV cache, reward, a reference forward,
  a policy forward, backward, clip and AdamW, in one loop with nothing else.

All use the same checkpoint (the tiny char-level Qwen3 model, and a small one whose vocabulary has
32768 tokens so that the LM head and the logits matter), the same prompts (all of the same length, so
every step has the same shapes), P prompts × G = 8 completions, the same completion budget, β = 0.04
(a reference model is loaded), one optimizer step per rollout, temperature 1, no top-k / top-p.

Every variant runs in its own subprocess, so its peak resident memory (``VmHWM``) is its own. The
subprocesses of a round run in lockstep: each is set up and runs its first (untimed) step, then they
take turns, one step at a time, so no two steps ever overlap and a change in the load of a shared
machine hits every variant alike; ``--rounds`` repeats this with fresh subprocesses (rotating order).
A step is timed from its start to its end (data, generation, reward, reference forward, policy
forward/backward, clip, AdamW, logging), wall and process CPU time; the first ``--warmup`` timed steps
of each subprocess are dropped. Printed per variant: median step time (and CPU time), generated
tokens/s (completion tokens up to and including the first EOS, over the step time), median tokens per
step and peak RSS; then the ratios the issue sets targets for.

    python tools/bench.py                         # both models, project / trl / floor
    python tools/bench.py --models tiny --variants project,project_hf,trl,floor --rounds 3 --steps 8
    python tools/bench.py --device cuda --dtype bfloat16 --models gpu   # ~0.24B-parameter model on a GPU

``tools/bench_step.py`` is the same benchmark restricted to project vs floor on the tiny model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

VARIANTS = ("project", "trl", "floor")
# Optional extra variant: the project with the HF-generate sampler (what TRL and the floor use).
EXTRA_VARIANTS = ("project_hf",)
RESULT_TAG = "BENCH_RESULT "
STEP_TAG = "BENCH_STEP"
_LOCKSTEP: Any = None  # in a subprocess run in lockstep: the protocol stream to the parent

# Model presets: keyword arguments of lightning_grpo.models.build_tiny_qwen3 plus the vocabulary size.
MODELS: dict[str, dict[str, int]] = {
    # The tiny demo/test model: 4 layers, width 128, character vocabulary (~100 tokens).
    "tiny": {},
    # Small: width 256, 4 layers, and a 32768-token vocabulary (character tokens + dummy tokens).
    "small": dict(hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=768, vocab_size=32768),
    # For a GPU: ~0.24B parameters (width 1024, 16 layers, 32k vocabulary).
    "gpu": dict(
        hidden_size=1024, num_layers=16, num_heads=16, num_kv_heads=8, intermediate_size=3072, vocab_size=32768,
        max_position_embeddings=512,
    ),
}


@dataclass
class Work:
    """What every variant runs: one value of this is passed to each subprocess as JSON."""

    model_dir: str
    prompts: int = 4
    group_size: int = 8
    max_new_tokens: int = 32
    beta: float = 0.04
    learning_rate: float = 1e-5
    steps: int = 5
    warmup: int = 2
    threads: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    sampler: str = "fast"  # the project's GroupSampler backend ("hf": HF generate, as TRL and the floor)


@dataclass
class Result:
    variant: str
    step_s: list[float] = field(default_factory=list)  # wall time per timed step
    cpu_s: list[float] = field(default_factory=list)  # CPU time of the process per timed step
    tokens: list[int] = field(default_factory=list)  # generated (loss) tokens per timed step
    peak_rss_mb: float = 0.0  # VmHWM of the subprocess
    peak_device_mb: float = 0.0  # torch.cuda.max_memory_allocated, on a GPU
    load: tuple[float, float] = (0.0, 0.0)  # 1-min load average at start and end of the subprocess


# ---- models and prompts ------------------------------------------------------------------------------
def build_wide_char_tokenizer(vocab_size: int) -> Any:
    """The char tokenizer of ``lightning_grpo.models`` with dummy tokens appended up to ``vocab_size``.

    Text never encodes to a dummy token (the pre-tokenizer splits into characters), but the model can
    generate them, so the LM head, the softmax and the log-probs run over the whole vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from lightning_grpo.models import BOS, EOS, PAD, build_char_tokenizer

    vocab = dict(build_char_tokenizer().get_vocab())
    for i in range(len(vocab), vocab_size):
        vocab[f"<x{i}>"] = i
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=" "))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, bos_token=BOS, unk_token=" ")
    tokenizer.padding_side = "left"
    return tokenizer


def save_bench_model(name: str, path: Path, seed: int = 0) -> Path:
    """Build the preset ``name`` offline and save model and tokenizer with ``save_pretrained``."""
    from lightning_grpo.models import build_char_tokenizer, build_tiny_qwen3

    sizes = dict(MODELS[name])
    vocab_size = sizes.pop("vocab_size", 0)
    tokenizer = build_wide_char_tokenizer(vocab_size) if vocab_size else build_char_tokenizer()
    model = build_tiny_qwen3(tokenizer, seed=seed, **sizes)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def bench_prompts(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``count`` arithmetic questions "ab+cd=" (all 6 characters, so every batch has the same shape)."""
    from lightning_grpo.sources import Arithmetic

    table = Arithmetic(max_operand=99, num_train=max(4 * count, 1000), seed=seed).load("train")
    picked = [(q, a) for q, a in zip(table["question"], table["answer"]) if len(q) == 6][:count]
    if len(picked) < count:
        raise RuntimeError(f"only {len(picked)} six-character questions, wanted {count}")
    return [q for q, _ in picked], [a for _, a in picked]


def num_prompts_needed(work: Work) -> int:
    # Room for every step (and some slack, so no loader runs out and no epoch ends mid-run).
    return work.prompts * (work.warmup + work.steps + 1) * 2


def _setup_torch(work: Work) -> None:
    import torch

    torch.set_num_threads(work.threads)
    torch.manual_seed(work.seed)


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Clock:
    """Per step: wall and process CPU time from its start to its end, and the tokens it generated.

    A step starts when the previous one ends (or, in lockstep, when the parent says ``go``: between
    two steps the subprocess waits for its turn, so the variants never run at the same time).
    """

    def __init__(self, work: Work) -> None:
        self.work = work
        self.total = work.warmup + work.steps + 1  # the first step (no start time) is never timed
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.tokens: list[int] = []
        self.start: tuple[float, float] | None = None

    def tick(self, tokens: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        if self.start is not None:
            self.wall.append(wall - self.start[0])
            self.cpu.append(cpu - self.start[1])
            self.tokens.append(tokens)
        if _LOCKSTEP is not None and len(self.wall) + 1 < self.total:
            _LOCKSTEP.write(STEP_TAG + "\n")  # this step is over: wait for our turn to run the next one
            _LOCKSTEP.flush()
            if not sys.stdin.readline():
                raise SystemExit("the bench parent went away")
        self.start = (time.perf_counter(), time.process_time())

    def result(self, variant: str) -> Result:
        skip = slice(self.work.warmup, None)
        return Result(variant, self.wall[skip], self.cpu[skip], self.tokens[skip])


# ---- the three variants ------------------------------------------------------------------------------
def run_project(work: Work) -> Result:
    import datasets
    from lightning.pytorch import Callback, Trainer

    from lightning_grpo.data import RolloutDataModule
    from lightning_grpo.module import GRPOModule
    from lightning_grpo.objectives import GRPO
    from lightning_grpo.sources import PromptSource

    questions, answers = bench_prompts(num_prompts_needed(work), work.seed)

    class FixedPrompts(PromptSource):
        def load(self, split: str) -> datasets.Dataset:
            return datasets.Dataset.from_dict(
                {"id": [f"q{i}" for i in range(len(questions))], "question": questions, "answer": answers,
                 "solution": answers}
            )

    clock = _Clock(work)

    class StepTimer(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            clock.tick(int(batch.completion_mask.sum()) if hasattr(batch, "completion_mask") else 0)

    timer = StepTimer()
    trainer = Trainer(
        accelerator="gpu" if work.device.startswith("cuda") else "cpu",
        devices=1,
        max_steps=work.warmup + work.steps + 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    module = GRPOModule(
        work.model_dir, objective=GRPO(beta=work.beta), learning_rate=work.learning_rate, dtype=work.dtype,
        log_completions_every_n_steps=0,
    )
    data = RolloutDataModule(
        FixedPrompts(), tokenizer=work.model_dir, prompts_per_step=work.prompts, group_size=work.group_size,
        max_new_tokens=work.max_new_tokens, seed=work.seed, **sampler_kwargs(RolloutDataModule, work.sampler),
    )
    data.sampler.backend = work.sampler  # the GroupSampler the data module built (see sampler_kwargs)
    trainer.fit(module, data)
    return clock.result("project" if work.sampler == "fast" else f"project_{work.sampler}")


def sampler_kwargs(data_class: type, backend: str) -> dict[str, str]:
    """The data module's own option for the sampler backend, when it has one.

    ``GroupSampler(backend=...)`` lives in ``rollout.py``; until ``RolloutDataModule`` exposes it as an
    argument, the bench sets ``data.sampler.backend`` on the sampler the data module built.
    """
    import inspect

    params = inspect.signature(data_class.__init__).parameters
    for name in ("sampler_backend", "backend"):
        if name in params:
            return {name: backend}
    return {}


def trl_config(work: Work, output_dir: str) -> Any:
    """A ``GRPOConfig`` for the same work as the project's step.

    Defaults of TRL 1.16 that differ from the project and are set here: ``gradient_checkpointing``
    (TRL: on), ``bf16`` (TRL: on), ``loss_type`` (TRL: ``dapo``; the project's GRPO is the paper's
    sequence-mean-token-mean = TRL's ``grpo``), ``use_bias_correction_kl`` (TRL: KL × ρ), the
    optimizer (TRL: fused AdamW; the project: ``torch.optim.AdamW``), Adam β2 (0.999 vs 0.99), the LR
    schedule (linear vs constant). One optimizer step per generation: the batch is all P·G completions,
    no gradient accumulation, ``steps_per_generation = num_iterations = 1`` (so no logp_old forward).
    """
    import torch
    from trl import GRPOConfig

    on_gpu = work.device.startswith("cuda")
    return GRPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=work.prompts * work.group_size,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        num_generations=work.group_size,
        max_completion_length=work.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=work.beta,
        epsilon=0.2,
        loss_type="grpo",
        scale_rewards="group",
        use_bias_correction_kl=False,
        mask_truncated_completions=False,
        use_vllm=False,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=not on_gpu,
        model_init_kwargs={"dtype": getattr(torch, work.dtype)},
        learning_rate=work.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.99,
        optim="adamw_torch",
        max_grad_norm=1.0,
        max_steps=work.warmup + work.steps + 1,
        logging_steps=10**6,
        log_completions=False,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=work.seed,
    )


def run_trl(work: Work) -> Result:
    import datasets
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from lightning_grpo.models import load_tokenizer
    from lightning_grpo.rewards import ExactInteger

    questions, answers = bench_prompts(num_prompts_needed(work), work.seed)
    dataset = datasets.Dataset.from_dict({"prompt": questions, "answer": answers})
    exact = ExactInteger()
    generated: list[int] = []

    def correct(prompts, completions, completion_ids, answer, **kwargs):  # type: ignore[no-untyped-def]
        generated.append(sum(len(ids) for ids in completion_ids))  # ids up to and including the first EOS
        return [exact.score_one(p, c, a, {}) for p, c, a in zip(prompts, completions, answer)]

    clock = _Clock(work)

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            clock.tick(generated[-1] if generated else 0)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = GRPOTrainer(
            model=work.model_dir,
            reward_funcs=[correct],
            args=trl_config(work, tmp),
            train_dataset=dataset,
            processing_class=load_tokenizer(work.model_dir),
            callbacks=[timer],
        )
        trainer.train()
    return clock.result("trl")


def run_floor(work: Work) -> Result:
    """Plain PyTorch: nothing but the work a step must do."""
    import torch

    from lightning_grpo.models import eos_token_ids, load_causal_lm, load_tokenizer
    from lightning_grpo.rewards import ExactInteger

    device = torch.device(work.device)
    policy = load_causal_lm(work.model_dir, work.dtype).to(device).train()
    reference = load_causal_lm(work.model_dir, work.dtype).to(device).eval().requires_grad_(False)
    tokenizer = load_tokenizer(work.model_dir)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=work.learning_rate, betas=(0.9, 0.99), weight_decay=0.0)
    questions, answers = bench_prompts(num_prompts_needed(work), work.seed)
    reward = ExactInteger()
    eos = eos_token_ids(policy, tokenizer)
    eos_t = torch.tensor(eos, device=device)
    g, p = work.group_size, work.prompts
    clock = _Clock(work)
    for step in range(work.warmup + work.steps + 1):
        picks = range(step * p, (step + 1) * p)
        batch = tokenizer([questions[i] for i in picks], padding=True, return_tensors="pt", add_special_tokens=False)
        prompt_ids = batch["input_ids"].to(device).repeat_interleave(g, 0)  # [N, Tp]
        prompt_mask = batch["attention_mask"].to(device).repeat_interleave(g, 0)  # [N, Tp]
        policy.eval()
        with torch.no_grad():
            seq = policy.generate(
                # top_k=0 and top_p=1 explicitly: left unset, generate would apply its global default top_k=50.
                input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=True, temperature=1.0, top_k=0,
                top_p=1.0, max_new_tokens=work.max_new_tokens, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
            )  # [N, Tp + Tc]
        policy.train()
        tp = prompt_ids.shape[1]
        completion = seq[:, tp:]  # [N, Tc]
        tc = completion.shape[1]
        is_eos = torch.isin(completion, eos_t)
        first = torch.where(is_eos.any(1), is_eos.int().argmax(1), tc)
        cmask = (torch.arange(tc, device=device) <= first[:, None]).float()  # [N, Tc]
        lengths = cmask.sum(1).long().tolist()
        texts = tokenizer.batch_decode([c[:n] for c, n in zip(completion.tolist(), lengths)], skip_special_tokens=True)
        rewards = torch.tensor(
            [reward.score_one("", t, answers[picks[i // g]], {}) for i, t in enumerate(texts)], device=device
        ).view(-1, g)
        adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).view(-1, 1)
        attn = torch.cat([prompt_mask, cmask.long()], 1)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            ref_logits = reference(input_ids=seq, attention_mask=attn, position_ids=pos, logits_to_keep=tc + 1).logits
            ref = torch.log_softmax(ref_logits[:, :-1].float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
            del ref_logits
        logits = policy(input_ids=seq, attention_mask=attn, position_ids=pos, logits_to_keep=tc + 1).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)  # [N, Tc]
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        per_token = -torch.exp(logp - logp.detach()) * adv + work.beta * kl
        loss = ((per_token * cmask).sum(1) / cmask.sum(1).clamp(min=1)).mean()
        loss.backward()
        del logits, logp, loss, per_token, kl
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        clock.tick(sum(lengths))
    return clock.result("floor")


RUNNERS = {
    "project": run_project,
    "project_hf": lambda work: run_project(replace(work, sampler="hf")),
    "trl": run_trl,
    "floor": run_floor,
}


def run_child(variant: str, work: Work) -> Result:
    """Run one variant in this process and fill in its peak memory and the load around it."""
    load_start = os.getloadavg()[0]
    _setup_torch(work)
    result = RUNNERS[variant](work)
    result.peak_rss_mb = _peak_rss_mb()
    if work.device.startswith("cuda"):
        import torch

        result.peak_device_mb = torch.cuda.max_memory_allocated() / 2**20
    result.load = (load_start, os.getloadavg()[0])
    return result


class Child:
    """One variant in its own subprocess (its own VmHWM), driven step by step through stdin/stdout."""

    def __init__(self, variant: str, work: Work, log: Path) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(work.threads), MKL_NUM_THREADS=str(work.threads),
                   TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
        command = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--lockstep",
                   "--work", json.dumps(asdict(work))]
        self.variant, self.log = variant, log
        self.err = open(log, "a")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     text=True, env=env)
        self.result: Result | None = None

    def wait(self) -> bool:
        """Block until the child ends a step (True) or finishes with its result (False)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == STEP_TAG:
                return True
            if line.startswith(RESULT_TAG):
                data = json.loads(line[len(RESULT_TAG) :])
                self.result = Result(**{**data, "load": tuple(data["load"])})
                self.proc.wait()
                self.err.close()
                return False
        self.proc.wait()
        self.err.close()
        raise RuntimeError(f"{self.variant} failed (exit {self.proc.returncode}); see {self.log}")

    def go(self) -> bool:
        """Let the child run its next step; True while it has more."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self.wait()


def run_lockstep(variants: list[str], work: Work, log: Path) -> dict[str, Result]:
    """All variants at once, one step at a time in turn: a step of one never overlaps a step of another.

    Set-up and the first (untimed) step of every subprocess happen before the first timed step; a
    subprocess that has ended its last step finishes (and exits) before the next one goes on.
    """
    children = [Child(v, work, log) for v in variants]
    active = [child for child in children if child.wait()]  # all set up and one step in
    while active:
        active = [child for child in active if child.go()]
    for child in children:
        if child.result is None:
            raise RuntimeError(f"{child.variant} ended without a result; see {log}")
    return {child.variant: child.result for child in children}  # type: ignore[misc]


# ---- the parent: interleave, summarise -----------------------------------------------------------------
def trl_available() -> bool:
    return importlib.util.find_spec("trl") is not None


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(name: str, work: Work, results: dict[str, list[Result]], params: int, vocab: int) -> str:
    gpu = work.device.startswith("cuda")
    lines = [
        f"== {name}: {params / 1e6:.2f}M parameters, vocabulary {vocab}; P={work.prompts} prompts x G={work.group_size}, "
        f"{work.max_new_tokens} new tokens, beta={work.beta}, {work.device} {work.dtype}, {work.threads} thread(s), "
        f"project sampler '{work.sampler}'",
    ]
    loads = [x for rs in results.values() for r in rs for x in r.load]
    rounds = max(len(rs) for rs in results.values())
    lines.append(
        f"   {rounds} round(s) x {work.steps} timed steps per variant (after {work.warmup} warm-up steps each); "
        f"1-min load average during the runs: {min(loads):.2f} .. {max(loads):.2f}"
    )
    header = (f"   {'variant':<10} {'step ms':>9} {'(min..max)':>16} {'CPU ms':>8} {'tokens/s':>9} {'tokens/step':>11} "
              f"{'peak RSS MiB':>13}")
    lines.append(header + (f" {'peak GPU MiB':>13}" if gpu else ""))
    summary: dict[str, dict[str, float]] = {}
    for variant, rs in results.items():
        times = [t for r in rs for t in r.step_s]
        tokens = [n for r in rs for n in r.tokens]
        summary[variant] = {
            "step": median(times),
            "cpu": median([t for r in rs for t in r.cpu_s]),
            "rate": median([n / t for n, t in zip(tokens, times)]),
            "rss": max(r.peak_rss_mb for r in rs),
            "gpu": max(r.peak_device_mb for r in rs),
        }
        m = summary[variant]
        row = (f"   {variant:<10} {m['step'] * 1000:9.1f} {f'({min(times) * 1000:.0f}..{max(times) * 1000:.0f})':>16} "
               f"{m['cpu'] * 1000:8.1f} {m['rate']:9.1f} {median(tokens):11.0f} {m['rss']:13.0f}")
        lines.append(row + (f" {m['gpu']:13.0f}" if gpu else ""))

    def ratio(a: str, b: str, key: str) -> str:
        return f"{summary[a][key] / summary[b][key]:.3f}" if summary[b][key] else "n/a"

    targets = {("project", "trl"): ("<= 0.90", "<= 0.75 on small"), ("project", "floor"): ("<= 1.10", "")}
    for a, b in (("project", "trl"), ("project", "floor"), ("project_hf", "trl"), ("project_hf", "floor")):
        if a in summary and b in summary:
            step_target, rss_target = targets.get((a, b), ("", ""))
            lines.append(
                f"   {a}/{b}: step time {ratio(a, b, 'step')}" + (f" (target {step_target})" if step_target else "")
                + f", CPU time {ratio(a, b, 'cpu')}, tokens/s {ratio(a, b, 'rate')}, peak RSS {ratio(a, b, 'rss')}"
                + (f" (target {rss_target})" if rss_target else "")
                + (f", peak GPU memory {ratio(a, b, 'gpu')}" if gpu else "")
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,small", help=f"comma-separated presets from {sorted(MODELS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of project,trl,floor (and project_hf: the project with the HF "
                             "generate sampler)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="fresh sets of subprocesses (one per variant, run step by step in turn)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per subprocess")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per subprocess")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per subprocess (1 by default: on a shared 2-core machine more threads "
                             "make every variant slower and noisier)")
    parser.add_argument("--sampler", default="fast", choices=["hf", "fast"],
                        help="the project's GroupSampler backend (TRL and the floor use HF generate)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--log", default=None, help="stderr of the subprocesses (default: a temporary file)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lockstep", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[Result]]]:
    args = parse_args(argv)
    if args.child:
        global _LOCKSTEP
        out = sys.stdout
        if args.lockstep:  # everything else the libraries print goes to stderr: stdout is the protocol
            _LOCKSTEP = out = os.fdopen(os.dup(1), "w")
            os.dup2(2, 1)
            sys.stdout = sys.stderr
        result = run_child(args.child, Work(**json.loads(args.work)))
        out.write(RESULT_TAG + json.dumps(asdict(result)) + "\n")
        out.flush()
        return {}
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS) - set(EXTRA_VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS + EXTRA_VARIANTS}")
    if "trl" in variants and not trl_available():
        print("TRL is not installed: skipping the 'trl' variant (pip install trl, or pip install -e '.[bench]')")
        variants.remove("trl")
    if not variants:
        raise SystemExit("no variant left to run")
    from transformers import AutoConfig

    everything: dict[str, dict[str, list[Result]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(args.log) if args.log else Path(tmp) / "bench.log"
        print(f"uptime at start: {os.getloadavg()}; subprocess stderr -> {log}", flush=True)
        for name in [m for m in args.models.split(",") if m]:
            model_dir = save_bench_model(name, Path(tmp) / name)
            config = AutoConfig.from_pretrained(model_dir)
            work = Work(
                model_dir=str(model_dir), prompts=args.prompts, group_size=args.group_size,
                max_new_tokens=args.max_new_tokens, beta=args.beta, steps=args.steps, warmup=args.warmup,
                threads=args.threads, device=args.device, dtype=args.dtype, sampler=args.sampler,
            )
            results: dict[str, list[Result]] = {v: [] for v in variants}
            for round_ in range(args.rounds):
                order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
                for variant, result in run_lockstep(order, work, log).items():
                    results[variant].append(result)
                    print(f"   [{name} round {round_ + 1}/{args.rounds}] {variant:<10} median step "
                          f"{median(result.step_s) * 1000:8.1f} ms, peak RSS {result.peak_rss_mb:7.0f} MiB, "
                          f"load {result.load[0]:.2f}->{result.load[1]:.2f}", flush=True)
            params = _count_parameters(config)
            print(summarise(name, work, results, params, config.vocab_size), flush=True)
            everything[name] = results
        print(f"uptime at end: {os.getloadavg()}", flush=True)
    return everything


def _count_parameters(config: Any) -> int:
    h, layers, v = config.hidden_size, config.num_hidden_layers, config.vocab_size
    head, q, kv = config.head_dim, config.num_attention_heads, config.num_key_value_heads
    per_layer = h * head * (2 * q + 2 * kv) + 3 * h * config.intermediate_size + 2 * h + 2 * head
    embed = v * h * (1 if config.tie_word_embeddings else 2)
    return embed + layers * per_layer + h


if __name__ == "__main__":
    main()
