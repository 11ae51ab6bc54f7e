"""One demo-sized GRPO step: this project (through Lightning) vs the same work in plain PyTorch.

A thin wrapper over ``tools/bench.py`` (which also runs TRL's GRPOTrainer and other model shapes):
the tiny model only, the project (its default configuration, or ``--sampler fast|hf``) and the
``floor`` variant. Prints the median step time of each and their ratio.

    python tools/bench_step.py [--steps 30] [--warmup 5] [--max-new-tokens 16] [--rounds 1] [--sampler fast]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402  (tools/ is not a package on the path when run as a script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sampler", default=None, choices=["hf", "fast"],
                        help="the project's sampler backend (default: the project's default configuration)")
    args = parser.parse_args()
    project = "project" if args.sampler is None else f"project_{args.sampler}"
    bench.main(
        [
            "--models", "tiny", "--variants", f"{project},floor", "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--rounds", str(args.rounds), "--prompts", str(args.prompts),
            "--group-size", str(args.group_size), "--max-new-tokens", str(args.max_new_tokens),
            "--threads", str(args.threads),
        ]
    )


if __name__ == "__main__":
    main()
