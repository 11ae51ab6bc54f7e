"""Run every objective recipe on a demo task with several seeds, and compare them with intervals.

Each recipe in ``configs/objectives/`` is trained ``--seeds`` times (default 0 1 2) from the task's shared
warm start: the RL seed (``seed_everything`` and ``data.seed``: prompt order and sampling) varies, the
starting model does not. With ``--vary-warm-start`` seed s also starts from its own warm start, built with
seed s (initialisation, data order) in ``<output_dir>_seed<s>`` (seed 0: the task's own folder), so the
intervals include how much the starting model moves the result. Independent runs go ``--jobs`` at a time;
a run already finished into ``--out`` with the same command is not run again (``--force`` re-runs). Before
the runs, one ``validate`` of each warm start (which also builds it when missing) gives the starting point
of pass@k. The figures need matplotlib (the ``bench`` extra): without it they are skipped, said once at
the start.

Per recipe, the mean over seeds and a 95% percentile-bootstrap interval over seeds of

* sampled accuracy over the last 20% of rollouts (every completion sampled for the step's prompts; with
  DAPO's dynamic sampling its first round, ``sampling/first_round_accuracy``), and the same at a matched
  number of *sampled completions* (the window of rollouts in which the recipe sampled the last 20% of the
  completions the others sample in the whole run: DAPO samples more per rollout);
* held-out pass@1, greedy accuracy and pass@k (k up to ``--val-samples``) at the end, beside the warm
  start's;
* token entropy and completion length over the last 20% of rollouts;
* cost: completions and tokens sampled, wall time;

and the same for each recipe's difference to ``--baseline`` (GRPO), paired by seed (the same seed
gives two recipes the same prompts). Writes the markdown tables, a JSON summary (``--summary``), a
figure of mean curves with bands (accuracy, entropy and length against rollouts, accuracy against
sampled completions) and one of pass@k against k.

The budget is ``--steps`` rollouts (P prompts x G completions each) for every recipe. A recipe that
feeds several optimizer steps per rollout (``updates_per_rollout`` x ``epochs``, e.g. ABC-GRPO's 4
mini-batches) gets ``trainer.max_steps`` scaled by that factor; its metrics are logged once per rollout.

    python tools/compare_objectives.py --task countdown --steps 200 --jobs 2 --out runs/compare_countdown
    python tools/compare_objectives.py --task demo --objectives grpo abc_grpo --seeds 0 1 2 3 4
    python tools/compare_objectives.py --task countdown --objectives grpo -- --model.optimizer.learning_rate=3e-4
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curves import read_scalars  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.stem for p in (ROOT / "configs" / "objectives").glob("*.yaml"))


@dataclass(frozen=True)
class Task:
    """A demo task: its configs (in order; they own the rewards, an objective recipe only adds shaping)."""

    configs: tuple[str, ...]
    overrides: tuple[str, ...] = field(default=())


TASKS = {
    "demo": Task(configs=("configs/demo.yaml",)),
    "countdown": Task(configs=("configs/demo.yaml", "configs/tasks/countdown.yaml")),
    "products": Task(configs=("configs/demo.yaml", "configs/tasks/tool_products.yaml")),
    # A real pretrained model (docs/real_model.md): the recipe's base model is the starting point.
    "smollm2": Task(configs=("configs/recipes/smollm2_135m_addition.yaml",)),
}


# ---- statistics ---------------------------------------------------------------------------------
def bootstrap_interval(
    values: list[float], confidence: float = 0.95, resamples: int = 10000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and the percentile-bootstrap interval of the mean.

    Resamples the values (seeds) with replacement. With few values the interval is narrow by
    construction (3 seeds: at most the range of the values), so it understates the uncertainty.
    NaNs are dropped; no value left gives three NaNs.
    """
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if data.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)  # [R]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(data.mean()), float(low), float(high)


def bootstrap_band(curves: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise mean [T] and bootstrap interval (low [T], high [T]) over the rows (seeds) of ``curves`` [S, T]."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, curves.shape[0], size=(resamples, curves.shape[0]))  # [R, S]
    means = curves[picks].mean(axis=1)  # [R, T]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    return curves.mean(axis=0), low, high


def last_fraction_mean(values: list[float], fraction: float = 0.2) -> float:
    """Mean over the last ``fraction`` of ``values`` (at least one value)."""
    if not values:
        return math.nan
    k = max(1, int(len(values) * fraction))
    return float(np.mean(values[-k:]))


def matched_window_mean(values: list[float], completions: list[float], budget: float, fraction: float = 0.2) -> float:
    """Mean of ``values`` over the rollouts that sampled the last ``fraction`` of ``budget`` completions.

    ``completions[i]`` is what rollout i sampled; a rollout belongs to the window when the completions
    sampled before it are in ``[(1 - fraction) * budget, budget)``. A recipe that samples the same
    number per rollout as the budget assumes gets its last-``fraction`` mean; one that samples more
    (DAPO) gets an earlier window; NaN when the run never reached the window.
    """
    before = np.concatenate([[0.0], np.cumsum(completions)[:-1]])  # [R]
    window = (before >= (1.0 - fraction) * budget - 1e-9) & (before < budget - 1e-9)
    if not window.any():
        return math.nan
    return float(np.asarray(values)[window].mean())


def moving_mean(values: np.ndarray, window: int = 20) -> np.ndarray:
    """Trailing moving mean over ``window`` points (shorter at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(0, idx - window)
    return (sums[idx] - sums[start]) / (idx - start)


# ---- one run ------------------------------------------------------------------------------------
def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def optimizer_steps_per_rollout(configs: list[Path], extra: list[str]) -> int:
    """``updates_per_rollout x epochs`` as the run will resolve it: the configs in order, then overrides."""
    values = {"updates_per_rollout": 1, "epochs": 1}
    for path in configs:
        update = (_load_yaml(path).get("model") or {}).get("update") or {}
        values.update({k: int(update[k]) for k in values if k in update})
    for arg in extra:
        for key in values:
            if arg.startswith(f"--model.update.{key}="):
                values[key] = int(arg.split("=", 1)[1])
    return values["updates_per_rollout"] * values["epochs"]


@dataclass
class RunSpec:
    recipe: str
    seed: int
    command: list[str]
    log_dir: Path  # TensorBoard save_dir/name; the run writes version_0 under it

    @property
    def record_path(self) -> Path:
        return self.log_dir / "record.json"


def run_spec(recipe: str, seed: int, args: argparse.Namespace) -> RunSpec:
    task = TASKS[args.task]
    recipe_path = ROOT / "configs" / "objectives" / f"{recipe}.yaml"
    configs = [ROOT / c for c in task.configs] + [recipe_path]
    log_dir = Path(args.out) / recipe / f"seed{seed}"
    command = [
        sys.executable, "-m", "lightning_grpo.cli", "fit",
        *[a for c in task.configs for a in ("--config", c)],
        "--config", f"configs/objectives/{recipe}.yaml",
        *task.overrides,
        f"--trainer.max_steps={args.steps * optimizer_steps_per_rollout(configs, args.extra)}",
        f"--trainer.val_check_interval={args.steps}",
        f"--data.validation.num_samples={args.val_samples}",
        f"--data.validation.max_prompts={args.val_prompts}",
        f"--trainer.logger.init_args.save_dir={log_dir.parent}",
        f"--trainer.logger.init_args.name={log_dir.name}",
        "--trainer.logger.init_args.version=0",
        "--trainer.callbacks=[]",  # no checkpoints: the comparison keeps only the event files
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        f"--seed_everything={seed}",
        f"--data.seed={seed}",
        *warm_start_overrides(task, seed if getattr(args, "vary_warm_start", False) else None),
        *args.extra,
    ]
    return RunSpec(recipe, seed, command, log_dir)


def task_warm_start(task: Task) -> tuple[str, int] | None:
    """The task's warm start as its configs resolve it: (output_dir, seed), or None when it has none."""
    found: tuple[str, int] | None = None
    for config in task.configs:
        prepare = _load_yaml(ROOT / config).get("prepare")
        if not isinstance(prepare, dict):
            continue
        values = {**prepare, **(prepare.get("init_args") or {})}
        previous = found or ("", 0)
        found = (str(values.get("output_dir", previous[0])), int(values.get("seed", previous[1])))
    return found if found and found[0] else None


def warm_start_overrides(task: Task, seed: int | None) -> list[str]:
    """Overrides that start a run from the warm start built with ``seed``, in a folder of its own
    (``<output_dir>_seed<seed>``); none for ``None`` or for the configs' own warm-start seed (the shared one)."""
    if seed is None:
        return []
    warm = task_warm_start(task)
    if warm is None:
        raise ValueError(f"--vary-warm-start: the task's configs {list(task.configs)} have no warm start (prepare:) to vary")
    output_dir, own_seed = warm
    if seed == own_seed:
        return []
    folder = f"{output_dir}_seed{seed}"
    return [f"--prepare.init_args.output_dir={folder}", f"--prepare.init_args.seed={seed}", f"--model.model_name_or_path={folder}"]


def start_spec(args: argparse.Namespace, seed: int | None = None) -> RunSpec:
    """``validate`` of the warm start (building it first when missing): pass@k before any RL. ``seed``: the
    warm start of that seed (``--vary-warm-start``); None: the task's own."""
    task = TASKS[args.task]
    log_dir = Path(args.out) / "warm_start" / f"seed{seed or 0}"
    command = [
        sys.executable, "-m", "lightning_grpo.cli", "validate",
        *[a for c in task.configs for a in ("--config", c)],
        *task.overrides,
        f"--data.validation.num_samples={args.val_samples}",
        f"--data.validation.max_prompts={args.val_prompts}",
        f"--trainer.logger.init_args.save_dir={log_dir.parent}",
        f"--trainer.logger.init_args.name={log_dir.name}",
        "--trainer.logger.init_args.version=0",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--seed_everything=0",
        "--data.seed=0",
        *warm_start_overrides(task, seed),
        *[a for a in args.extra if a.startswith(("--prepare", "--model.model_name_or_path", "--data.source",
                                                  "--data.rollout.environment", "--data.rollout.max_episode_tokens"))],
    ]
    return RunSpec("warm_start", seed or 0, command, log_dir)


def start_specs(args: argparse.Namespace) -> list[RunSpec]:
    """One warm-start validation per warm start the runs start from: the task's own, or one per seed."""
    if getattr(args, "vary_warm_start", False):
        return [start_spec(args, seed) for seed in args.seeds]
    return [start_spec(args)]


def mean_metrics(per_start: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over the warm starts that have it."""
    keys = sorted({k for m in per_start for k in m})
    return {k: float(np.mean([m[k] for m in per_start if k in m])) for k in keys}


def figures_available() -> bool:
    """Whether matplotlib imports (the ``bench`` extra): checked before any run, so a long comparison does not
    end in an ImportError."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def finished(spec: RunSpec) -> dict[str, Any] | None:
    """The record of an earlier run of exactly this command that completed, else None."""
    if not spec.record_path.exists():
        return None
    record = json.loads(spec.record_path.read_text())
    if record.get("command") != spec.command[1:] or not (spec.log_dir / "version_0").exists():
        return None
    return record


def claim(spec: RunSpec) -> bool:
    """Mark ``spec`` as running in this process, unless another live process already runs it.

    Lets several invocations share one ``--out`` (e.g. one per seed): each skips what another runs.
    """
    spec.log_dir.parent.mkdir(parents=True, exist_ok=True)
    marker = spec.log_dir.parent / f"{spec.log_dir.name}.running"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(marker.read_text() or "0"), 0)  # the owner is alive: leave the run to it
            return False
        except (ProcessLookupError, ValueError):
            marker.unlink(missing_ok=True)  # stale: its owner died
            return claim(spec)
    with os.fdopen(fd, "w") as handle:
        handle.write(str(os.getpid()))
    return True


def execute(spec: RunSpec, force: bool = False) -> dict[str, Any] | None:
    """Run ``spec`` (output in ``<log_dir>/run.log``) and write its record; None when another process
    runs it or it finished meanwhile; raise on failure."""
    if not claim(spec):
        return None
    marker = spec.log_dir.parent / f"{spec.log_dir.name}.running"
    try:
        record = None if force else finished(spec)
        return record if record is not None else _execute(spec)
    finally:
        marker.unlink(missing_ok=True)


def _execute(spec: RunSpec) -> dict[str, Any]:
    if spec.log_dir.exists():  # a stale or failed attempt: start clean so version_0 is this run
        import shutil

        shutil.rmtree(spec.log_dir)
    spec.log_dir.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(ROOT)}
    log = spec.log_dir / "run.log"
    start = time.perf_counter()
    with log.open("w") as handle:
        handle.write(f"$ {' '.join(spec.command)}\n\n")
        handle.flush()
        result = subprocess.run(spec.command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{spec.recipe} seed {spec.seed} failed (exit {result.returncode}, output in {log}):\n{tail}")
    record = {"recipe": spec.recipe, "seed": spec.seed, "command": spec.command[1:], "wall_s": wall}
    spec.record_path.write_text(json.dumps(record, indent=1))
    return record


# ---- metrics of one run -------------------------------------------------------------------------
def run_metrics(scalars: dict[str, list[tuple[int, float]]], completions_per_rollout: int, steps: int) -> dict[str, Any]:
    """The comparison's numbers for one run, from its scalars (tag -> [(step, value)])."""

    def values(tag: str) -> list[float]:
        return [v for _, v in scalars.get(tag, [])]

    accuracy_tag = "sampling/first_round_accuracy" if "sampling/first_round_accuracy" in scalars else "train/accuracy"
    accuracy = values(accuracy_tag)
    lengths = values("completions/length_mean")
    if "sampling/extra_rounds" not in scalars:  # every sampled completion is in the trained batch: exact
        completions = [float(completions_per_rollout)] * len(lengths)
        tokens = [c * l for c, l in zip(completions, lengths)]
    elif "sampling/completions" in scalars:  # logged per rollout, every sampling round included
        completions, tokens = values("sampling/completions"), values("sampling/tokens")
    else:  # older runs: the trained batch's mean length stands for the dropped groups'
        extra_rounds = values("sampling/extra_rounds") or [0.0] * len(accuracy)
        completions = [completions_per_rollout * (1.0 + r) for r in extra_rounds]
        tokens = [c * l for c, l in zip(completions, lengths)]
    out: dict[str, Any] = {
        "rollouts": len(accuracy),
        "accuracy_last20": last_fraction_mean(accuracy),
        "accuracy_matched_samples": matched_window_mean(accuracy, completions, completions_per_rollout * steps),
        "reward_last20": last_fraction_mean(values("reward/total")),
        "entropy_last20": last_fraction_mean(values("train/entropy")),
        "length_last20": last_fraction_mean(lengths),
        "sampled_completions": float(sum(completions)),
        "sampled_tokens": float(sum(tokens)),
        "curves": {
            "accuracy": accuracy,
            "entropy": values("train/entropy"),
            "length": lengths,
            "completions": completions,
        },
    }
    for tag, entries in scalars.items():
        if tag.startswith("val/"):
            out[tag] = entries[-1][1]  # the last validation
        elif tag.startswith(("train/", "sampling/", "reward/", "completions/")):  # every logged curve, for the JSON
            out[f"last20:{tag}"] = last_fraction_mean([v for _, v in entries])
    return out


def pass_at_k(metrics: dict[str, Any]) -> dict[int, float]:
    return {int(t.split("@")[1]): v for t, v in metrics.items() if t.startswith("val/pass@")}


# ---- tables and figures -------------------------------------------------------------------------
COLUMNS = (
    ("accuracy_last20", "sampled acc., last 20%", 3),
    ("accuracy_matched_samples", "sampled acc. at matched samples", 3),
    ("val/pass@1", "held-out pass@1", 3),
    ("val/accuracy", "held-out greedy", 3),
    ("val/pass@32", "held-out pass@32", 3),
    ("entropy_last20", "entropy, last 20% (nats)", 3),
    ("length_last20", "length, last 20% (tokens)", 2),
    ("sampled_completions", "completions sampled", 0),
    ("sampled_tokens", "tokens sampled", 0),
    ("wall_s", "wall (s)", 0),
)


ACCURACY_KEYS = ("accuracy_last20", "accuracy_matched_samples", "val/pass@1", "val/accuracy", "val/pass@32")


def _cell(stat: tuple[float, float, float], digits: int) -> str:
    mean, low, high = stat
    if math.isnan(mean):
        return "–"
    if digits == 0:
        return f"{mean:,.0f} [{low:,.0f}, {high:,.0f}]"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def summarize(per_run: dict[str, dict[int, dict[str, Any]]], baseline: str, keys: list[str]) -> dict[str, Any]:
    """Per recipe: {key: (mean, low, high)} over seeds, and the paired difference to ``baseline``."""
    summary: dict[str, Any] = {}
    for recipe, runs in per_run.items():
        seeds = sorted(runs)
        stats = {k: bootstrap_interval([runs[s].get(k, math.nan) for s in seeds]) for k in keys}
        entry: dict[str, Any] = {"seeds": seeds, "stats": stats}
        if recipe != baseline and baseline in per_run:
            common = [s for s in seeds if s in per_run[baseline]]
            entry["difference_to_baseline"] = {
                k: bootstrap_interval([runs[s].get(k, math.nan) - per_run[baseline][s].get(k, math.nan) for s in common])
                for k in keys
            }
        summary[recipe] = entry
    return summary


def markdown_tables(summary: dict[str, Any], start: dict[str, float], baseline: str, opt_steps: dict[str, int]) -> str:
    """Accuracy table, behaviour-and-cost table, and the paired differences to ``baseline``."""
    measured = [c for c in COLUMNS if all(c[0] in entry["stats"] for entry in summary.values())]  # e.g. no pass@32 with k < 32
    accuracy = [c for c in measured if c[0] in ACCURACY_KEYS]
    behaviour = [c for c in measured if c[0] not in ACCURACY_KEYS]
    lines: list[str] = []
    for columns in (accuracy, behaviour):
        lines += ["| recipe | updates / rollout | " + " | ".join(name for _, name, _ in columns) + " |"]
        lines.append("|" + "---|" * (len(columns) + 2))
        if start and any(k in start for k, _, _ in columns):
            lines.append("| warm start | – | " + " | ".join(f"{start[k]:.3f}" if k in start else "" for k, _, _ in columns) + " |")
        for recipe, entry in summary.items():
            cells = [_cell(entry["stats"][k], d) for k, _, d in columns]
            lines.append(f"| {recipe} | {opt_steps.get(recipe, 1)} | " + " | ".join(cells) + " |")
        lines.append("")
    diff_columns = [c for c in measured if c[0] not in ("sampled_completions", "sampled_tokens", "wall_s")]
    lines += [f"Difference to {baseline}, paired by seed (mean [95% bootstrap interval]):", ""]
    lines.append("| recipe | " + " | ".join(name for _, name, _ in diff_columns) + " |")
    lines.append("|" + "---|" * (len(diff_columns) + 1))
    for recipe, entry in summary.items():
        if "difference_to_baseline" in entry:
            cells = [_cell(entry["difference_to_baseline"][k], max(d, 2)) for k, _, d in diff_columns]
            lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw_curves(per_run: dict[str, dict[int, dict[str, Any]]], png: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    colors = plt.get_cmap("tab10")
    panels = (
        (axes[0, 0], "accuracy", "sampled accuracy (moving mean, 20 rollouts)"),
        (axes[0, 1], "entropy", "token entropy, nats (moving mean, 20 rollouts)"),
        (axes[1, 0], "length", "completion length, tokens (moving mean, 20 rollouts)"),
    )
    for i, (recipe, runs) in enumerate(per_run.items()):
        color = colors(i % 10)
        for ax, key, _ in panels:
            curves = [np.asarray(r["curves"][key], dtype=float) for r in runs.values() if r["curves"][key]]
            if not curves:
                continue
            width = min(len(c) for c in curves)
            smooth = np.stack([moving_mean(c[:width]) for c in curves])  # [S, T]
            mean, low, high = bootstrap_band(smooth)
            x = np.arange(1, width + 1)
            ax.plot(x, mean, color=color, lw=1.2, label=recipe)
            ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0)
        ax = axes[1, 1]
        for r in runs.values():  # per seed: accuracy against the completions sampled so far
            sampled = np.cumsum(r["curves"]["completions"])
            ax.plot(sampled, moving_mean(np.asarray(r["curves"]["accuracy"], dtype=float)), color=color, lw=0.7, alpha=0.7)
    axes[1, 1].set(title="sampled accuracy against completions sampled (one line per seed)", xlabel="completions sampled")
    for ax, _, name in panels:
        ax.set(title=name, xlabel="rollout")
    axes[0, 0].legend(fontsize=8, ncol=2)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title + " — mean over seeds, band: 95% bootstrap interval over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def draw_pass_at_k(per_run: dict[str, dict[int, dict[str, Any]]], start: dict[str, float], png: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = plt.get_cmap("tab10")
    start_k = pass_at_k(start)
    ks = sorted(start_k)
    if ks:
        ax.plot(ks, [start_k[k] for k in ks], color="black", ls="--", lw=1.5, label="warm start")
    for i, (recipe, runs) in enumerate(per_run.items()):
        per_seed = [pass_at_k(r) for r in runs.values()]
        ks = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
        if not ks:
            continue
        curves = np.array([[p[k] for k in ks] for p in per_seed])  # [S, K]
        mean, low, high = bootstrap_band(curves)
        ax.plot(ks, mean, color=colors(i % 10), lw=1.2, marker="o", ms=3, label=recipe)
        ax.fill_between(ks, low, high, color=colors(i % 10), alpha=0.15, lw=0)
        if start_k and all(k in start_k for k in ks):
            base = np.array([start_k[k] for k in ks])
            mean, low, high = bootstrap_band(curves - base)
            ax_d.plot(ks, mean, color=colors(i % 10), lw=1.2, marker="o", ms=3, label=recipe)
            ax_d.fill_between(ks, low, high, color=colors(i % 10), alpha=0.15, lw=0)
    ax_d.axhline(0.0, color="black", lw=0.8, ls="--")
    ax.set(title="held-out pass@k at the end", xlabel="k", xscale="log")
    ax_d.set(title="pass@k at the end minus the warm start's", xlabel="k", xscale="log")
    for a in (ax, ax_d):
        a.set_xticks(ks or [1])
        a.set_xticklabels([str(k) for k in (ks or [1])])
        a.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.suptitle(title + " — mean over seeds, band: 95% bootstrap interval over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# ---- main ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="countdown")
    parser.add_argument("--objectives", nargs="*", default=RECIPES, choices=RECIPES)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200, help="rollouts per run (see above)")
    parser.add_argument("--val-samples", type=int, default=32, help="samples per held-out prompt (largest k of pass@k)")
    parser.add_argument("--val-prompts", type=int, default=100, help="held-out prompts in a validation")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses one thread)")
    parser.add_argument("--baseline", default="grpo")
    parser.add_argument("--out", default=None, help="default: runs/compare_<task>")
    parser.add_argument("--png", default=None, help="prefix of the two figures (default: <out>/compare)")
    parser.add_argument("--summary", default=None, help="JSON summary (default: <out>/summary.json)")
    parser.add_argument("--tabulate-only", action="store_true", help="run nothing: tables and figures from the finished runs")
    parser.add_argument("--force", action="store_true", help="re-run runs that already finished into --out")
    parser.add_argument("--vary-warm-start", action="store_true",
                        help="seed s also starts from its own warm start (built with seed s in <output_dir>_seed<s>)")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more CLI overrides for every run, after --")
    args = parser.parse_args()
    args.extra = [a for a in args.extra if a != "--"]
    args.out = args.out or str(ROOT / "runs" / f"compare_{args.task}")
    png = args.png or str(Path(args.out) / "compare")
    task = TASKS[args.task]
    if args.vary_warm_start:
        if task_warm_start(task) is None:
            parser.error(f"--vary-warm-start: task {args.task} has no warm start (its starting model is {task.configs[0]}'s)")
        clash = [a for a in args.extra if a.startswith(("--prepare.init_args.output_dir", "--prepare.init_args.seed", "--model.model_name_or_path"))]
        if clash:
            parser.error(f"--vary-warm-start sets the warm start's folder and seed per seed itself; drop {clash}")
    figures = figures_available()
    if not figures:
        print("matplotlib is not installed (pip install -e '.[bench]'): tables and the JSON summary only, no figures", flush=True)

    starts = start_specs(args)

    def ensure_start(start: RunSpec) -> None:
        while not args.tabulate_only and (args.force or finished(start) is None):
            print(f"validating the warm start (built first when missing): {start.log_dir}", flush=True)
            if execute(start, args.force) is not None:
                break
            time.sleep(10)  # another invocation is building or validating it

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(ensure_start, starts))  # each warm start is built once, before the runs that share it
    per_start = {
        start.seed: {t: v[-1][1] for t, v in read_scalars(start.log_dir / "version_0").items() if t.startswith("val/")}
        for start in starts
    }
    start_metrics = mean_metrics(list(per_start.values()))  # one warm start, or the mean over the seeds' own

    specs = [run_spec(r, s, args) for s in args.seeds for r in args.objectives]  # seed by seed: a cut-short run leaves whole seeds
    records: dict[tuple[str, int], dict[str, Any]] = {}
    todo = []
    for spec in specs:
        record = None if args.force else finished(spec)
        if record is not None:
            records[(spec.recipe, spec.seed)] = record
        elif not args.tabulate_only:
            todo.append(spec)
    print(f"{len(specs)} runs, {len(specs) - len(todo)} already finished, {len(todo)} to run, {args.jobs} at a time", flush=True)
    failed: dict[tuple[str, int], str] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(execute, spec, args.force): spec for spec in todo}
        for future in concurrent.futures.as_completed(futures):
            spec = futures[future]
            try:
                record = future.result()
                if record is None:
                    print(f"{spec.recipe} seed {spec.seed}: run by another process, left to it", flush=True)
                    continue
                records[(spec.recipe, spec.seed)] = record
                print(f"{spec.recipe} seed {spec.seed}: {record['wall_s']:.0f} s", flush=True)
            except RuntimeError as error:  # report it and go on with the other runs
                failed[(spec.recipe, spec.seed)] = str(error).splitlines()[0]
                print(error, flush=True)

    data = _load_yaml(ROOT / task.configs[0]).get("data") or {}
    for config in task.configs[1:]:
        data.update(_load_yaml(ROOT / config).get("data") or {})
    completions_per_rollout = int(data.get("prompts_per_step", 4)) * int(data.get("group_size", 8))
    per_run: dict[str, dict[int, dict[str, Any]]] = {}
    opt_steps: dict[str, int] = {}
    for spec in specs:
        if (spec.recipe, spec.seed) not in records:
            continue
        metrics = run_metrics(read_scalars(spec.log_dir / "version_0"), completions_per_rollout, args.steps)
        metrics["wall_s"] = records[(spec.recipe, spec.seed)]["wall_s"]
        per_run.setdefault(spec.recipe, {})[spec.seed] = metrics
        configs = [ROOT / c for c in task.configs] + [ROOT / "configs" / "objectives" / f"{spec.recipe}.yaml"]
        opt_steps[spec.recipe] = optimizer_steps_per_rollout(configs, args.extra)

    keys = sorted({k for runs in per_run.values() for m in runs.values() for k, v in m.items() if isinstance(v, float)})
    summary = summarize(per_run, args.baseline, keys)
    ks = sorted(pass_at_k(start_metrics))
    print(
        f"\nTask {args.task}: {args.steps} rollouts per run, seeds {args.seeds}; mean over seeds [95% bootstrap interval "
        f"over seeds]; held-out: the last validation ({args.val_samples} samples per prompt at temperature 1, and greedy)\n"
    )
    tables = markdown_tables(summary, start_metrics, args.baseline, opt_steps)
    print(tables)
    print("\npass@k, k = " + ", ".join(map(str, ks)))
    print("| recipe | " + " | ".join(f"pass@{k}" for k in ks) + " |")
    print("|" + "---|" * (len(ks) + 1))
    print("| warm start | " + " | ".join(f"{start_metrics[f'val/pass@{k}']:.3f}" for k in ks) + " |")
    for recipe, entry in summary.items():
        print(f"| {recipe} | " + " | ".join(f"{entry['stats'].get(f'val/pass@{k}', (math.nan,))[0]:.3f}" for k in ks) + " |")
    for (recipe, seed), reason in failed.items():
        print(f"FAILED {recipe} seed {seed}: {reason}")

    summary_path = Path(args.summary or Path(args.out) / "summary.json")
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps({
        "task": args.task, "steps": args.steps, "seeds": args.seeds, "val_samples": args.val_samples,
        "extra": args.extra, "warm_start": start_metrics, "vary_warm_start": args.vary_warm_start,
        "warm_starts": {str(s): m for s, m in per_start.items()}, "updates_per_rollout": opt_steps, "recipes": summary,
        "runs": {r: {str(s): {k: v for k, v in m.items() if k != "curves"} for s, m in runs.items()} for r, runs in per_run.items()},
        "failed": {f"{r}/{s}": reason for (r, s), reason in failed.items()},
    }, indent=1))
    counts = sorted({len(runs) for runs in per_run.values()}) or [0]
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    title = f"{args.task}: {args.steps} rollouts, {seeds} seeds per recipe" + (", a warm start per seed" if args.vary_warm_start else "")
    if not figures:
        print(f"\nwrote {summary_path} (figures skipped: no matplotlib)")
        return
    draw_curves(per_run, f"{png}_curves.png", title)
    draw_pass_at_k(per_run, start_metrics, f"{png}_pass_at_k.png", title)
    print(f"\nwrote {summary_path}, {png}_curves.png, {png}_pass_at_k.png")


if __name__ == "__main__":
    main()
