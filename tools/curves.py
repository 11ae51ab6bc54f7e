"""Read scalar curves from a run's TensorBoard event files; print a summary or draw a PNG.

    python tools/curves.py runs/demo/version_0                      # first/last-20% means of key curves
    python tools/curves.py runs/demo/version_0 --png curves.png     # reward, accuracy, entropy vs step
    python tools/curves.py runs/demo                                # every run below: one table each
    python tools/curves.py runs/demo --png curves.png               # every run below: one line each

A folder without event files is searched below for the runs (folders holding ``events.out.tfevents.*``);
a folder with none anywhere below is an error (exit status 1) naming it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

KEY_CURVES = ("train/accuracy", "reward/total", "train/entropy", "train/kl", "completions/length_mean")


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in the run directory as a list of (step, value)."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def find_runs(folder: str | Path) -> list[Path]:
    """The run folders (those holding TensorBoard event files) at or below ``folder``, in path order."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    return sorted({p.parent for p in root.rglob("events.out.tfevents.*")})


def first_last_means(values: list[float], fraction: float = 0.2) -> tuple[float, float]:
    """Mean over the first and over the last ``fraction`` of the values (at least one each)."""
    k = max(1, int(len(values) * fraction))
    return sum(values[:k]) / k, sum(values[-k:]) / k


def summary_lines(scalars: dict[str, list[tuple[int, float]]]) -> list[str]:
    """One line per key curve the run logged: its first-20% and last-20% means."""
    lines = []
    for tag in KEY_CURVES:
        if tag in scalars:
            first, last = first_last_means([v for _, v in scalars[tag]])
            lines.append(f"{tag:28s} steps={len(scalars[tag]):4d} first20%={first:.4f} last20%={last:.4f} change={last - first:+.4f}")
    if not lines:
        lines.append(f"none of {', '.join(KEY_CURVES)}; its scalars: {', '.join(sorted(scalars)) or 'none'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log_dir", help="a run's folder (e.g. runs/demo/version_0), or a folder of runs")
    parser.add_argument("--png", help="write reward/accuracy/entropy curves to this PNG (needs matplotlib)")
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.log_dir)
    except FileNotFoundError as error:
        print(f"curves.py: {error}", file=sys.stderr)
        return 1
    if not runs:
        print(f"curves.py: no TensorBoard event files (events.out.tfevents.*) in {args.log_dir} or below", file=sys.stderr)
        return 1
    root = Path(args.log_dir)
    curves = {str(run.relative_to(root)) if run != root else str(run): read_scalars(run) for run in runs}
    for name, scalars in curves.items():
        if len(curves) > 1:
            print(f"{name}:")
        for line in summary_lines(scalars):
            print(("  " if len(curves) > 1 else "") + line)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tags = [t for t in ("train/accuracy", "reward/total", "train/entropy") if any(t in s for s in curves.values())]
        if not tags:
            print(f"curves.py: no run in {args.log_dir} logged {', '.join(('train/accuracy', 'reward/total', 'train/entropy'))}: no figure", file=sys.stderr)
            return 1
        fig, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.5), squeeze=False)
        for ax, tag in zip(axes[0], tags):
            for name, scalars in curves.items():
                if tag in scalars:
                    steps, values = zip(*scalars[tag])
                    ax.plot(steps, values, lw=0.8, label=name if len(curves) > 1 else None)
            ax.set_title(tag)
            ax.set_xlabel("optimizer step")
        if len(curves) > 1:
            axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
