"""Build a stand-in for a recipe's Qwen2.5 model offline: random weights, the real vocabulary and chat template.

The GPU recipes in ``configs/recipes/`` name hub models (``Qwen/Qwen2.5-0.5B-Instruct``, ...). To try one
without a network or a GPU, point ``model.model_name_or_path`` at a stand-in built here: a randomly
initialised ``Qwen2ForCausalLM`` with Qwen2.5's vocabulary size (151,936 rows), its context length and
generation config, at a tiny width, saved with ``save_pretrained`` beside a byte-level tokenizer with
Qwen's special tokens and chat template. It is the model ``tests/test_recipes.py`` trains the recipes
with (``lightning_grpo/demo/standin_model.py``). It learns nothing useful: it checks that a recipe's configuration,
rewards, validation, checkpoints and export run.

    python tools/make_standin_model.py runs/standin/qwen2.5-0.5b                  # context 32,768 (0.5B, 7B)
    python tools/make_standin_model.py runs/standin/qwen2.5-math-1.5b --context 4096
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lightning_grpo.demo.standin_model import QWEN2_VOCAB_SIZE, save_qwen2_like

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="the folder to write (model, tokenizer, generation config)")
    parser.add_argument("--context", type=int, default=32_768,
                        help="max_position_embeddings: 32768 for Qwen2.5-0.5B/7B-Instruct, 4096 for Qwen2.5-Math-1.5B")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=QWEN2_VOCAB_SIZE, help="embedding rows (Qwen2.5's by default)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16", help="of the saved weights (Qwen publishes bf16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = Path(args.path)
    if path.exists() and any(path.iterdir()):
        print(f"make_standin_model.py: {path} exists and is not empty: choose another folder or delete it", file=sys.stderr)
        return 1
    if args.hidden_size % 4:
        print(f"make_standin_model.py: --hidden-size must be a multiple of 4 (4 attention heads), got {args.hidden_size}", file=sys.stderr)
        return 1
    save_qwen2_like(path, dtype=DTYPES[args.dtype], hidden_size=args.hidden_size, num_layers=args.layers,
                    intermediate_size=2 * args.hidden_size, vocab_size=args.vocab_size,
                    max_position_embeddings=args.context, seed=args.seed)
    print(f"wrote a random Qwen2 stand-in ({args.vocab_size} vocabulary rows, width {args.hidden_size}, {args.layers} layers, "
          f"context {args.context}) to {path}: --model.model_name_or_path={path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
