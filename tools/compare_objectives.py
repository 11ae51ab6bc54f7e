"""Run the demo task once per objective recipe (same seed, warm start and budget) and compare.

Writes a markdown table (training accuracy over the first and last 20% of steps, mean reward over the last 20% of steps,
final entropy, wall time) and one PNG of reward and entropy against step for every objective.

    python tools/compare_objectives.py --steps 300 --out runs/compare
    python tools/compare_objectives.py --objectives grpo abc_grpo gtpo --steps 100
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from curves import first_last_means, read_scalars

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.stem for p in (ROOT / "configs" / "objectives").glob("*.yaml"))


def run(recipe: str, args: argparse.Namespace) -> tuple[float, Path]:
    cmd = [
        sys.executable, "-m", "lightning_grpo.cli", "fit",
        "--config", "configs/demo.yaml",
        "--config", f"configs/objectives/{recipe}.yaml",
        f"--trainer.max_steps={args.steps}",
        f"--trainer.logger.init_args.save_dir={args.out}",
        f"--trainer.logger.init_args.name={recipe}",
        "--trainer.enable_progress_bar=false",
        f"--seed_everything={args.seed}",
        *args.extra,
    ]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{recipe} failed:\n{result.stderr[-3000:]}")
    runs = sorted((Path(args.out) / recipe).glob("version_*"), key=lambda p: p.stat().st_mtime)
    return time.perf_counter() - start, runs[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", nargs="*", default=RECIPES, choices=RECIPES)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "runs" / "compare"))
    parser.add_argument("--png", default=None, help="default: <out>/compare.png")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more CLI overrides after --")
    args = parser.parse_args()
    args.extra = [a for a in args.extra if a != "--"]
    rows, curves = [], {}
    for recipe in args.objectives:
        wall, run_dir = run(recipe, args)
        scalars = read_scalars(run_dir)
        accuracy = [v for _, v in scalars["train/accuracy"]]
        reward = [v for _, v in scalars["reward/total"]]
        entropy = [v for _, v in scalars["train/entropy"]]
        acc_first, acc_last = first_last_means(accuracy)
        rows.append((recipe, acc_first, acc_last, first_last_means(reward)[1], first_last_means(entropy)[1], wall))
        curves[recipe] = (scalars["reward/total"], scalars["train/entropy"])
        print(f"{recipe}: done in {wall:.0f} s", flush=True)
    print(f"\n{args.steps} steps per objective, seed {args.seed}; means over the first / last 20% of steps\n")
    print("| recipe | accuracy first 20% | accuracy last 20% | reward last 20% | entropy last 20% (nats) | wall time (s) |")
    print("|---|---|---|---|---|---|")
    for recipe, a0, a1, r1, h1, wall in rows:
        print(f"| {recipe} | {a0:.3f} | {a1:.3f} | {r1:.3f} | {h1:.3f} | {wall:.0f} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_h) = plt.subplots(1, 2, figsize=(12, 4))
    for recipe, (reward, entropy) in curves.items():
        ax_r.plot(*zip(*_smooth(reward)), label=recipe, lw=1)
        ax_h.plot(*zip(*_smooth(entropy)), label=recipe, lw=1)
    ax_r.set(title="reward (moving mean, 20 steps)", xlabel="step")
    ax_h.set(title="token entropy, nats (moving mean, 20 steps)", xlabel="step")
    ax_r.legend(fontsize=8)
    fig.tight_layout()
    png = args.png or str(Path(args.out) / "compare.png")
    fig.savefig(png, dpi=110)
    print(f"\nwrote {png}")


def _smooth(points: list[tuple[int, float]], window: int = 20) -> list[tuple[int, float]]:
    out = []
    for i in range(len(points)):
        chunk = points[max(0, i - window + 1) : i + 1]
        out.append((points[i][0], sum(v for _, v in chunk) / len(chunk)))
    return out


if __name__ == "__main__":
    main()
