"""Peak memory of GRPO steps at the real Qwen2.5 vocabulary size, with the project's default configuration.

Builds a randomly initialised Qwen2 (width 128, 2 layers by default) whose embedding has the real
Qwen2.5 row count (151,936) beside a tokenizer with fewer entries (151,665, as Qwen2.5's own: real
checkpoints pad the embedding, so the model can sample ids the tokenizer cannot decode), saves both
with ``save_pretrained``, and trains it with ``GRPOModule`` / ``RolloutDataModule`` as a config would
(defaults everywhere: GRPO with β = 0.04, so the reference model is loaded; the default sampler) on
arithmetic prompts: 4 prompts × G = 8, 256 new tokens, 2 steps. Random weights almost never sample
EOS, so every completion runs to the budget. Prints the peak resident memory of this process
(``VmHWM``) after set-up, after the first step and at the end, and the step times.

    OMP_NUM_THREADS=1 python tools/memory_real_vocab.py             # the issue's setting
    python tools/memory_real_vocab.py --max-new-tokens 1024 --steps 1   # longer completions

Run it against another checkout (e.g. the code before a change) with ``PYTHONPATH=<checkout>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from transformers import Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import build_wide_char_tokenizer  # noqa: E402  (tools/ is not a package on the path)

QWEN25_VOCAB = 151_936  # embedding rows of the Qwen2.5 checkpoints
QWEN25_TOKENIZER = 151_665  # entries of their tokenizer


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def save_real_vocab_qwen2(path: Path, hidden: int, layers: int, vocab: int, tokenizer_size: int, seed: int = 0) -> Path:
    """A random Qwen2 with ``vocab`` embedding rows and a char tokenizer of ``tokenizer_size`` entries."""
    tokenizer = build_wide_char_tokenizer(tokenizer_size)
    heads = max(1, hidden // 64)
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4096,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class StepProbe(Callback):
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        now = time.perf_counter()
        print(f"step {trainer.global_step}: {now - self.start:6.1f} s, completion tokens "
              f"{int(batch.completion_mask.sum())}, peak RSS so far {peak_rss_mib():7.0f} MiB", flush=True)
        self.start = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=QWEN25_VOCAB)
    parser.add_argument("--tokenizer-size", type=int, default=QWEN25_TOKENIZER)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sampler", default=None, choices=["fast", "hf"],
                        help="data.rollout.sampler: FastSampler or HFSampler (default: the engine's default)")
    args = parser.parse_args()

    import lightning_grpo
    from lightning_grpo.data import RolloutDataModule
    from lightning_grpo.rollout_engine import RolloutEngine
    from lightning_grpo.sampling import FastSampler, HFSampler, Sampling
    from lightning_grpo.module import GRPOModule
    from lightning_grpo.demo.arithmetic import Arithmetic

    torch.set_num_threads(args.threads)
    seed_everything(0, verbose=False)
    print(f"lightning_grpo from {Path(lightning_grpo.__file__).parent}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(save_real_vocab_qwen2(Path(tmp) / "qwen2", args.hidden, args.layers, args.vocab,
                                              args.tokenizer_size))
        trainer = Trainer(
            accelerator="cpu", devices=1, max_steps=args.steps, max_epochs=-1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0, callbacks=[StepProbe()],
        )
        module = GRPOModule(model_dir)  # defaults: GRPO (beta 0.04), float32
        sampler = {"fast": FastSampler, "hf": HFSampler}[args.sampler]() if args.sampler else None
        data = RolloutDataModule(
            Arithmetic(max_operand=99, num_operands=2, operations="+"), tokenizer=model_dir, prompts_per_step=args.prompts,
            rollout=RolloutEngine(args.group_size, Sampling(max_new_tokens=args.max_new_tokens), sampler=sampler),
        )
        print(f"set-up: peak RSS {peak_rss_mib():.0f} MiB", flush=True)
        start = time.perf_counter()
        trainer.fit(module, data)
        total = time.perf_counter() - start
    print(f"hidden {args.hidden}, {args.layers} layers, vocabulary {args.vocab} (tokenizer {args.tokenizer_size}); "
          f"{args.prompts} prompts x G={args.group_size}, {args.max_new_tokens} new tokens, {args.steps} steps, "
          f"{args.threads} thread(s): {total:.1f} s; PEAK RSS {peak_rss_mib():.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
