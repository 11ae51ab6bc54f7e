"""Run the demo task once per objective recipe (same seed, warm start and budget) and compare.

Writes a markdown table (sampled accuracy over the first and last 20% of rollouts, mean reward and token entropy
over the last 20%, held-out accuracy at the last validation, wall time) and one PNG of the sampled accuracy (the
correctness reward) and the entropy against rollout for every objective. Sampled accuracy is over every completion
sampled for the step's prompts (with DAPO's dynamic sampling: its first round, before groups are dropped).

The budget is ``--steps`` rollouts (P prompts x G completions each) for every recipe: the same prompts and the
same number of sampled completions. A recipe that feeds several optimizer steps per rollout
(``updates_per_rollout`` x ``epochs``, e.g. ABC-GRPO's 4 mini-batches) gets ``trainer.max_steps`` scaled by that
factor, since ``max_steps`` counts optimizer steps; its metrics are logged once per rollout like the others'.

    python tools/compare_objectives.py --steps 300 --out runs/compare
    python tools/compare_objectives.py --objectives grpo abc_grpo gtpo --steps 100
    python tools/compare_objectives.py --steps 300 --out runs/compare --reuse   # re-tabulate, run only what is missing
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from curves import first_last_means, read_scalars

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.stem for p in (ROOT / "configs" / "objectives").glob("*.yaml"))


def optimizer_steps_per_rollout(recipe: str, extra: list[str]) -> int:
    """``updates_per_rollout x epochs`` as the run will resolve it: demo.yaml, then the recipe, then overrides."""
    import yaml

    values = {"updates_per_rollout": 1, "epochs": 1}
    for path in (ROOT / "configs" / "demo.yaml", ROOT / "configs" / "objectives" / f"{recipe}.yaml"):
        model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
        values.update({k: int(model[k]) for k in values if k in model})
    for arg in extra:
        for key in values:
            if arg.startswith(f"--model.{key}="):
                values[key] = int(arg.split("=", 1)[1])
    return values["updates_per_rollout"] * values["epochs"]


def run(recipe: str, args: argparse.Namespace) -> tuple[float, Path]:
    cmd = [
        sys.executable, "-m", "lightning_grpo.cli", "fit",
        "--config", "configs/demo.yaml",
        "--config", f"configs/objectives/{recipe}.yaml",
        f"--trainer.max_steps={args.steps * optimizer_steps_per_rollout(recipe, args.extra)}",
        f"--trainer.logger.init_args.save_dir={args.out}",
        f"--trainer.logger.init_args.name={recipe}",
        "--trainer.enable_progress_bar=false",
        f"--seed_everything={args.seed}",
        *args.extra,
    ]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = Path(args.out) / f"{recipe}.log"  # the run's full output, kept for diagnosis
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(cmd)}\n\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    if result.returncode != 0:
        reason = f"{recipe} failed (exit {result.returncode}, full output in {log})"
        raise RuntimeError(f"{reason}:\n{result.stderr[-3000:]}")
    runs = sorted((Path(args.out) / recipe).glob("version_*"), key=lambda p: p.stat().st_mtime)
    record = {
        "recipe": recipe, "rollouts": args.steps, "seed": args.seed, "extra": args.extra, "wall_s": wall,
        "run_dir": str(runs[-1]),
    }
    (Path(args.out) / f"{recipe}.json").write_text(json.dumps(record, indent=1))
    return wall, runs[-1]


def finished(recipe: str, args: argparse.Namespace) -> tuple[float, Path] | None:
    """(wall time, run directory) of an earlier run of ``recipe`` with the same budget, seed and overrides, if any."""
    record_path = Path(args.out) / f"{recipe}.json"
    if not record_path.exists():
        return None
    record = json.loads(record_path.read_text())
    if (record["rollouts"], record["seed"], record["extra"]) != (args.steps, args.seed, args.extra):
        return None
    if not Path(record["run_dir"]).exists():
        return None
    return record["wall_s"], Path(record["run_dir"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", nargs="*", default=RECIPES, choices=RECIPES)
    parser.add_argument("--steps", type=int, default=300, help="rollouts per recipe (see above)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "runs" / "compare"))
    parser.add_argument("--png", default=None, help="default: <out>/compare.png")
    parser.add_argument(
        "--reuse", action="store_true",
        help="take recipes already run into --out with the same --steps, --seed and overrides from there (re-tabulate)",
    )
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more CLI overrides after --")
    args = parser.parse_args()
    args.extra = [a for a in args.extra if a != "--"]
    rows, curves, failed = [], {}, {}
    for recipe in args.objectives:
        try:
            wall, run_dir = (args.reuse and finished(recipe, args)) or run(recipe, args)
        except RuntimeError as error:  # report it and go on with the other recipes
            failed[recipe] = str(error).splitlines()[0]
            print(error, flush=True)
            continue
        scalars = read_scalars(run_dir)

        def per_rollout(tag: str) -> list[tuple[int, float]]:  # logged once per rollout (batch), from 0
            return [(step + 1, value) for step, value in scalars[tag]]

        def values(tag: str) -> list[float]:
            return [v for _, v in scalars[tag]]

        # Sampled accuracy: under DAPO's dynamic sampling train/accuracy covers only the kept (mixed) groups.
        accuracy = "sampling/first_round_accuracy" if "sampling/first_round_accuracy" in scalars else "train/accuracy"
        acc_first, acc_last = first_last_means(values(accuracy))
        held_out = {tag: values(tag)[-1] if tag in scalars else float("nan") for tag in ("val/pass@1", "val/accuracy")}
        rows.append((
            recipe, acc_first, acc_last, first_last_means(values("reward/total"))[1],
            first_last_means(values("train/entropy"))[1], held_out["val/pass@1"], held_out["val/accuracy"], wall,
        ))
        curves[recipe] = (per_rollout(accuracy), per_rollout("train/entropy"))
        print(f"{recipe}: done in {wall:.0f} s", flush=True)
    print(f"\n{args.steps} rollouts per objective, seed {args.seed}; means over the first / last 20% of rollouts;")
    print("held-out: the last validation (200 unseen sums; pass@1 over 4 samples at temperature 1, and greedy)\n")
    print(
        "| recipe | sampled accuracy first 20% | sampled accuracy last 20% | reward last 20% | entropy last 20% (nats) "
        "| held-out pass@1 | held-out greedy | wall time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for recipe, a0, a1, r1, h1, p1, greedy, wall in rows:
        print(f"| {recipe} | {a0:.3f} | {a1:.3f} | {r1:.3f} | {h1:.3f} | {p1:.3f} | {greedy:.3f} | {wall:.0f} |")
    for recipe, reason in failed.items():
        print(f"| {recipe} | {reason} | | | | | | |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_h) = plt.subplots(1, 2, figsize=(13, 4.8))
    for recipe, (reward, entropy) in curves.items():
        ax_r.plot(*zip(*_smooth(reward)), label=recipe, lw=1)
        ax_h.plot(*zip(*_smooth(entropy)), label=recipe, lw=1)
    ax_r.set(title="sampled accuracy = correctness reward (moving mean, 20 rollouts)", xlabel="rollout")
    ax_h.set(title="token entropy, nats (moving mean, 20 rollouts)", xlabel="rollout")
    ax_r.legend(fontsize=8, ncol=2)
    for ax in (ax_r, ax_h):
        ax.grid(alpha=0.3)
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
