"""Read scalar curves from a run's TensorBoard event files; print a summary or draw a PNG.

    python tools/curves.py runs/demo/version_0                      # first/last-20% means of key curves
    python tools/curves.py runs/demo/version_0 --png curves.png     # reward, accuracy, entropy vs step
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

KEY_CURVES = ("train/accuracy", "reward/total", "train/entropy", "train/kl", "completions/length_mean")


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in the run directory as a list of (step, value)."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def first_last_means(values: list[float], fraction: float = 0.2) -> tuple[float, float]:
    """Mean over the first and over the last ``fraction`` of the values (at least one each)."""
    k = max(1, int(len(values) * fraction))
    return sum(values[:k]) / k, sum(values[-k:]) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log_dir")
    parser.add_argument("--png", help="write reward/accuracy/entropy curves to this PNG (needs matplotlib)")
    args = parser.parse_args()
    scalars = read_scalars(args.log_dir)
    for tag in KEY_CURVES:
        if tag in scalars:
            first, last = first_last_means([v for _, v in scalars[tag]])
            print(f"{tag:28s} steps={len(scalars[tag]):4d} first20%={first:.4f} last20%={last:.4f} change={last - first:+.4f}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tags = [t for t in ("train/accuracy", "reward/total", "train/entropy") if t in scalars]
        fig, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.5))
        for ax, tag in zip(axes if len(tags) > 1 else [axes], tags):
            steps, values = zip(*scalars[tag])
            ax.plot(steps, values, lw=0.8)
            ax.set_title(tag)
            ax.set_xlabel("optimizer step")
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
