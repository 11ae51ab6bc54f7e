"""tools/compare_objectives.py: intervals over seeds, matched budgets, per-task reward overrides, skipping."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import compare_objectives as co  # noqa: E402


def test_bootstrap_interval_of_equal_values_has_no_width() -> None:
    assert co.bootstrap_interval([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3, 0.3))


def test_bootstrap_interval_of_two_values() -> None:
    # Means of two resampled values are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # quantiles are the extremes.
    assert co.bootstrap_interval([0.0, 1.0]) == pytest.approx((0.5, 0.0, 1.0))


def test_bootstrap_interval_narrows_with_more_seeds_and_drops_nan() -> None:
    rng = np.random.default_rng(1)
    few = co.bootstrap_interval([0.4, 0.5, 0.65])
    many = co.bootstrap_interval(list(rng.normal(0.5, 0.1, size=200)))
    assert few[1] <= few[0] <= few[2]
    assert many[2] - many[1] < 0.05 < few[2] - few[1]  # 200 seeds: about 4 sigma / sqrt(200) = 0.028 wide
    assert abs(many[0] - 0.5) < 0.03
    assert co.bootstrap_interval([0.2, math.nan, 0.4])[0] == pytest.approx(0.3)
    assert all(math.isnan(v) for v in co.bootstrap_interval([math.nan]))


def test_bootstrap_band_is_pointwise() -> None:
    curves = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 2.0]])  # [S=2, T=3]
    mean, low, high = co.bootstrap_band(curves)
    np.testing.assert_allclose(mean, [0.0, 2.0, 2.0])
    np.testing.assert_allclose(low, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(high, [0.0, 3.0, 2.0])


def test_last_fraction_and_moving_mean() -> None:
    assert co.last_fraction_mean(list(range(1, 11))) == pytest.approx(9.5)  # last 2 of 10
    assert co.last_fraction_mean([4.0]) == 4.0
    np.testing.assert_allclose(co.moving_mean(np.array([1.0, 3.0, 5.0, 7.0]), window=2), [1.0, 2.0, 4.0, 6.0])


def test_matched_window_follows_sampled_completions() -> None:
    values = [float(i) for i in range(10)]
    # Every rollout samples the budget's share: the window is the last 20% of rollouts.
    assert co.matched_window_mean(values, [64.0] * 10, budget=640) == pytest.approx(8.5)
    # Twice as many per rollout (dynamic sampling): completions 512..640 were sampled by rollout 4.
    assert co.matched_window_mean(values, [128.0] * 10, budget=640) == pytest.approx(4.0)
    # Uneven rounds: before = 0, 64, 192, 256, 512, 576, 640 -> rollouts 4 and 5.
    assert co.matched_window_mean(values[:7], [64, 128, 64, 256, 64, 64, 64], budget=640) == pytest.approx(4.5)
    assert math.isnan(co.matched_window_mean(values[:2], [64.0, 64.0], budget=640))  # never got there


def test_runs_leave_the_task_rewards_to_the_configs(tmp_path: Path) -> None:
    # Objective recipes add shaping (data.rollout.shaping) and never restate rewards: nothing to rewrite.
    for recipe in ("dapo", "agpo"):
        command = co.run_spec(recipe, 0, _args(tmp_path, task="countdown")).command
        assert not [a for a in command if a.startswith("--data.rollout.rewards")]


def test_optimizer_steps_per_rollout() -> None:
    configs = [ROOT / "configs" / "demo.yaml", ROOT / "configs" / "objectives" / "abc_grpo.yaml"]
    assert co.optimizer_steps_per_rollout(configs, []) == 4
    assert co.optimizer_steps_per_rollout(configs, ["--model.update.epochs=2"]) == 8
    assert co.optimizer_steps_per_rollout(configs[:1] + [ROOT / "configs" / "objectives" / "grpo.yaml"], []) == 1


def _args(tmp_path: Path, **kw) -> argparse.Namespace:  # type: ignore[no-untyped-def]
    base = dict(task="countdown", steps=10, val_samples=32, val_prompts=100, out=str(tmp_path), extra=[])
    return argparse.Namespace(**{**base, **kw})


def test_runs_vary_the_rl_seed_and_are_skipped_only_when_finished_with_the_same_command(tmp_path: Path) -> None:
    spec = co.run_spec("abc_grpo", 2, _args(tmp_path))
    assert "--seed_everything=2" in spec.command and "--data.seed=2" in spec.command
    assert "--trainer.max_steps=40" in spec.command and "--trainer.val_check_interval=10" in spec.command
    assert spec.log_dir == tmp_path / "abc_grpo" / "seed2"
    assert co.finished(spec) is None
    (spec.log_dir / "version_0").mkdir(parents=True)
    spec.record_path.write_text(json.dumps({"command": spec.command[1:], "wall_s": 5.0}))
    assert co.finished(spec) == {"command": spec.command[1:], "wall_s": 5.0}
    longer = co.run_spec("abc_grpo", 2, _args(tmp_path, steps=20))
    assert co.finished(longer) is None  # same place, different budget: run again
    spec.record_path.write_text(json.dumps({"command": spec.command[1:] + ["--model.optimizer.learning_rate=1"], "wall_s": 5.0}))
    assert co.finished(spec) is None


def test_run_metrics_with_dynamic_sampling() -> None:
    steps = 5
    scalars = {
        "train/accuracy": [(i, 0.9) for i in range(steps)],  # kept groups only: not the policy's accuracy
        "sampling/first_round_accuracy": [(i, 0.1 * i) for i in range(steps)],
        "sampling/extra_rounds": [(i, 1.0) for i in range(steps)],
        "completions/length_mean": [(i, 4.0) for i in range(steps)],
        "train/entropy": [(i, 1.0 - 0.1 * i) for i in range(steps)],
        "reward/total": [(i, 0.5) for i in range(steps)],
        "val/pass@1": [(5, 0.4)],
        "val/accuracy": [(5, 0.3)],
    }
    m = co.run_metrics(scalars, completions_per_rollout=64, steps=steps)
    assert m["accuracy_last20"] == pytest.approx(0.4)
    assert m["sampled_completions"] == 5 * 128
    assert m["sampled_tokens"] == 5 * 128 * 4.0
    assert m["accuracy_matched_samples"] == pytest.approx(0.2)  # 256..320 of 320 sampled in rollout 2
    assert m["entropy_last20"] == pytest.approx(0.6)
    assert m["val/pass@1"] == 0.4 and m["val/accuracy"] == 0.3
    plain = co.run_metrics({k: v for k, v in scalars.items() if not k.startswith("sampling/")}, 64, steps)
    assert plain["accuracy_last20"] == pytest.approx(0.9) and plain["sampled_completions"] == 5 * 64
    assert plain["sampled_tokens"] == 5 * 64 * 4.0
    # Logged counts (every sampling round) win over the estimate from extra rounds and the kept groups' length.
    counted = {**scalars, "sampling/completions": [(i, 96.0) for i in range(steps)], "sampling/tokens": [(i, 600.0) for i in range(steps)]}
    m = co.run_metrics(counted, completions_per_rollout=64, steps=steps)
    assert m["sampled_completions"] == 5 * 96 and m["sampled_tokens"] == 5 * 600
    assert m["accuracy_matched_samples"] == pytest.approx(0.3)  # 256..320 of 320: rollout 3 (288 before it)


def test_summary_pairs_differences_by_seed() -> None:
    per_run = {
        "grpo": {0: {"x": 0.1}, 1: {"x": 0.5}, 2: {"x": 0.9}},
        "other": {0: {"x": 0.2}, 1: {"x": 0.6}, 2: {"x": 1.0}},  # always 0.1 above, though the seeds spread widely
    }
    summary = co.summarize(per_run, "grpo", ["x"])
    assert summary["other"]["stats"]["x"][0] == pytest.approx(0.6)
    assert summary["other"]["stats"]["x"][2] - summary["other"]["stats"]["x"][1] > 0.4
    assert summary["other"]["difference_to_baseline"]["x"] == pytest.approx((0.1, 0.1, 0.1))
    assert "difference_to_baseline" not in summary["grpo"]


@pytest.mark.slow
def test_a_run_claimed_by_a_live_process_is_left_to_it(tmp_path: Path) -> None:
    import os
    import subprocess

    spec = co.run_spec("grpo", 0, _args(tmp_path))
    assert co.claim(spec)  # this process runs it
    assert not co.claim(spec)  # a second claim (another invocation) is refused while we live
    marker = spec.log_dir.parent / "seed0.running"
    assert marker.read_text() == str(os.getpid())
    dead = subprocess.Popen(["true"])
    dead.wait()
    marker.write_text(str(dead.pid))  # its owner has exited: the claim is stale and taken over
    assert co.claim(spec) and marker.read_text() == str(os.getpid())


def test_rollouts_count_what_was_sampled_over_every_round() -> None:
    import torch

    from lightning_grpo.demo.countdown import CountdownReward
    from lightning_grpo.demo.tiny_model import build_char_tokenizer
    from lightning_grpo.rewards.base import RewardComposer
    from lightning_grpo.rollout import build_rollout, gather_groups
    from lightning_grpo.sampling.base import Samples

    tokenizer = build_char_tokenizer()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def samples(texts: list[str]) -> Samples:  # one prompt, len(texts) completions, width 8
        rows = [tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] for t in texts]
        completion = torch.full((len(rows), 8), pad)
        mask = torch.zeros((len(rows), 8), dtype=torch.long)
        for i, r in enumerate(rows):
            completion[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        prompt = torch.ones((len(rows), 2), dtype=torch.long)
        return Samples(torch.cat([prompt * 5, completion], dim=1), mask, torch.zeros(len(rows), dtype=torch.bool), prompt, len(rows))

    batch = {"input_ids": torch.ones(1, 2, dtype=torch.long), "attention_mask": torch.ones(1, 2, dtype=torch.long),
             "prompt": ["3 7 9 -> 16:"], "answer": ["16|3,7,9"], "id": ["p0"]}
    composer = RewardComposer([CountdownReward()])
    first = build_rollout(samples(["7+9", "3*7-9+1", "16"]), batch, tokenizer, composer, 1.0, 8)
    assert first.stats["sampling/completions"] == 3 and first.stats["sampling/tokens"] == 4 + 8 + 3
    assert first.correct.tolist() == [True, False, False]
    second = build_rollout(samples(["9+7", "9"]), batch, tokenizer, composer, 1.0, 8)
    both = gather_groups([first, second], [(1, 0)], pad)  # dynamic sampling keeps the second round's group
    assert both.stats["sampling/completions"] == 5 and both.stats["sampling/tokens"] == 15 + 4 + 2


def test_vary_warm_start_gives_each_seed_its_own_warm_start(tmp_path: Path) -> None:
    args = _args(tmp_path, vary_warm_start=True, seeds=[0, 1, 2])
    assert co.task_warm_start(co.TASKS["countdown"]) == ("runs/countdown/warm_start", 0)  # countdown.yaml's, over demo.yaml's
    assert co.task_warm_start(co.TASKS["smollm2"]) is None
    one = co.run_spec("grpo", 1, args).command
    assert one[-3:] == ["--prepare.init_args.output_dir=runs/countdown/warm_start_seed1", "--prepare.init_args.seed=1",
                        "--model.model_name_or_path=runs/countdown/warm_start_seed1"]
    # seed 0 is the configs' own warm start: its command is the shared one's, so finished runs are reused
    assert co.run_spec("grpo", 0, args).command == co.run_spec("grpo", 0, _args(tmp_path)).command
    assert not any("warm_start_seed" in a for a in co.run_spec("grpo", 1, _args(tmp_path)).command)
    starts = co.start_specs(args)
    assert [s.log_dir for s in starts] == [tmp_path / "warm_start" / f"seed{s}" for s in (0, 1, 2)]
    assert "--prepare.init_args.seed=2" in starts[2].command and "--model.model_name_or_path=runs/countdown/warm_start_seed2" in starts[2].command
    assert starts[0].command == co.start_spec(_args(tmp_path)).command
    assert [s.log_dir for s in co.start_specs(_args(tmp_path, seeds=[0, 1]))] == [tmp_path / "warm_start" / "seed0"]
    with pytest.raises(ValueError, match=r"have no warm start"):
        co.warm_start_overrides(co.TASKS["smollm2"], 1)
    assert co.mean_metrics([{"val/pass@1": 0.1, "val/accuracy": 0.2}, {"val/pass@1": 0.3}]) == pytest.approx(
        {"val/pass@1": 0.2, "val/accuracy": 0.2})


def test_without_matplotlib_the_figures_are_skipped_before_any_run(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert not co.figures_available()
    ran: list[str] = []
    monkeypatch.setattr(co, "execute", lambda spec, force=False: ran.append(spec.recipe))
    monkeypatch.setattr(co, "draw_curves", lambda *a: pytest.fail("drew a figure without matplotlib"))
    monkeypatch.setattr(co, "read_scalars", lambda path: {})
    monkeypatch.setattr(sys, "argv", ["compare_objectives.py", "--task", "demo", "--objectives", "grpo", "--seeds", "0",
                                      "--out", str(tmp_path), "--tabulate-only"])
    co.main()
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("matplotlib is not installed")
    assert "figures skipped: no matplotlib" in out and (tmp_path / "summary.json").exists() and ran == []
