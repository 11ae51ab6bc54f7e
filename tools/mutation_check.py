"""Planted-bug (mutation) check: does the test suite catch realistic bugs in the update's core?

Each mutation is one small, realistic edit (a flipped sign, a swapped bound, a dropped mask or
``.detach()``, a min for a max, a recomputed logp_old...). The script copies the repository to a
temporary directory, applies one mutation at a time there, runs only the test files that guard the
mutated file (with ``-x`` and a timeout), and records whether the tests failed ("killed") or passed
("survived"). The working tree is never modified.

    python tools/mutation_check.py                 # all mutations
    python tools/mutation_check.py --only grpo     # the ids containing "grpo"
    python tools/mutation_check.py --list          # list them

Mutations marked ``equivalent`` cannot change behaviour on one process (the reason is given); they
are run and reported but left out of the kill rate. A mutation whose original text is not found
(the code changed) is reported as "stale" so the list is kept up to date; a test run that breaks
(pytest exit code other than 0 or 1) as "error". A run past the timeout counts as killed (the
mutant made the tests hang). Run it with the project's environment (``python -m pytest`` must work).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Stages of test files, run in order until one fails (cheap, targeted files first: each stage pays
# its own start-up, and TRL/verl imports are the slow part).
OBJECTIVE_TESTS = [
    ["tests/test_objective_grpo.py", "tests/test_objectives_zoo.py", "tests/test_entropy_bonus.py",
     "tests/test_objective_gtpo.py"],
    ["tests/reference/test_parity.py"],
]
ADVANTAGE_TESTS = [["tests/test_advantages.py", "tests/test_objectives_zoo.py"], ["tests/reference/test_parity.py"],
                   ["tests/test_update_loop.py"]]
MODULE_TESTS = [["tests/test_update_loop.py"], ["tests/test_module.py", "tests/test_invariance.py"]]
METRICS_TESTS = [["tests/test_metrics.py", "tests/test_eval_accumulator_mixed.py"]]
LOGPROB_TESTS = [["tests/test_entropy_bonus.py", "tests/test_logprobs.py"]]
REWARD_TESTS = [["tests/test_rewards_shaping.py"]]

TESTS_FOR = {
    "lightning_grpo/objectives/": OBJECTIVE_TESTS,
    "lightning_grpo/advantages.py": ADVANTAGE_TESTS,
    "lightning_grpo/module.py": MODULE_TESTS,
    "lightning_grpo/metrics.py": METRICS_TESTS,
    "lightning_grpo/logprobs.py": LOGPROB_TESTS,
    "lightning_grpo/rewards/length.py": REWARD_TESTS,
}


@dataclass(frozen=True)
class Mutation:
    id: str
    path: str  # relative to the repository root
    before: str  # must occur exactly once in the file
    after: str
    equivalent: str = ""  # why it cannot change behaviour (left out of the kill rate)


O = "lightning_grpo/objectives/"
MUTATIONS = [
    # ---- objectives/base.py: KL, aggregation, fractions, entropy bonus -------------------------------
    Mutation("kl-k3-sign", O + "base.py", "value = torch.exp(delta) - delta - 1.0", "value = torch.exp(delta) + delta - 1.0"),
    Mutation("kl-k1-sign", O + "base.py", "        value = -delta\n", "        value = delta\n"),
    Mutation("kl-k2-half", O + "base.py", "    elif base == \"k2\":\n        value = 0.5 * delta.square()",
             "    elif base == \"k2\":\n        value = delta.square()"),
    Mutation("kl-straight-through-dropped", O + "base.py", "return k2 - k2.detach() + value.detach()", "return value"),
    Mutation("kl-ratio-detached", O + "base.py", "kl = kl * self.kl_weight(inputs)  # [B, T]",
             "kl = kl * self.kl_weight(inputs).detach()  # [B, T]"),
    Mutation("kl-ratio-inverted", O + "base.py", "return torch.exp(inputs.logp - inputs.old_logp)",
             "return torch.exp(inputs.old_logp - inputs.logp)"),
    Mutation("kl-ratio-flag-inverted", O + "base.py", "        if self.kl_ratio_weighted:\n", "        if not self.kl_ratio_weighted:\n"),
    Mutation("kl-loss-scale-factor-dropped", O + "base.py",
             "kl, inputs.mask, self.regularizer_aggregation(), inputs.normalizers, self.loss_scale_factor",
             "kl, inputs.mask, self.regularizer_aggregation(), inputs.normalizers"),
    Mutation("kl-metric-per-sequence", O + "base.py",
             'metrics["kl"] = (kl.detach() * inputs.mask).sum() / inputs.normalizers.num_tokens',
             'metrics["kl"] = (kl.detach() * inputs.mask).sum() / inputs.normalizers.num_sequences'),
    Mutation("kl-aggregated-token-mean", O + "base.py", "kl, inputs.mask, self.regularizer_aggregation(), inputs.normalizers",
             'kl, inputs.mask, "token_mean", inputs.normalizers'),
    Mutation("agg-unmasked", O + "base.py", "masked = per_token * mask  # [B, T]", "masked = per_token  # [B, T]"),
    Mutation("agg-seq-mean-by-tokens", O + "base.py",
             "return (masked.sum(dim=1) / lengths).sum() / normalizers.num_sequences",
             "return (masked.sum(dim=1) / lengths).sum() / normalizers.num_tokens"),
    Mutation("agg-token-mean-by-sequences", O + "base.py", "return masked.sum() / normalizers.num_tokens",
             "return masked.sum() / normalizers.num_sequences"),
    Mutation("agg-loss-scale-factor-ignored", O + "base.py",
             "scale = loss_scale_factor if loss_scale_factor is not None else normalizers.max_length",
             "scale = normalizers.max_length"),
    Mutation("agg-token-sum-normalised", O + "base.py", '    if mode == "token_sum":\n        return masked.sum()',
             '    if mode == "token_sum":\n        return masked.sum() / normalizers.num_tokens'),
    Mutation("token-fraction-unmasked", O + "base.py", "return ((condition.float() * mask).sum() / normalizers.num_tokens).detach()",
             "return ((condition.float() * torch.ones_like(mask)).sum() / normalizers.num_tokens).detach()"),
    Mutation("sequence-fraction-counts-empty", O + "base.py", "return ((condition.float() * nonempty).sum()",
             "return ((condition.float() * torch.ones_like(nonempty)).sum()"),
    Mutation("entropy-gate-inverted", O + "base.py", "if bonus.adaptive and not self._last_entropy <= bonus.target:",
             "if bonus.adaptive and self._last_entropy <= bonus.target:"),
    Mutation("entropy-target-strict", O + "base.py", "        if entropy <= bonus.target:", "        if entropy < bonus.target:"),
    Mutation("entropy-no-max", O + "base.py", "min(self._entropy_coef + bonus.coef_delta, bonus.coef_max)",
             "self._entropy_coef + bonus.coef_delta"),
    Mutation("entropy-no-min", O + "base.py", "max(self._entropy_coef - bonus.coef_delta, bonus.coef_min)",
             "self._entropy_coef - bonus.coef_delta"),
    Mutation("entropy-last-not-stored", O + "base.py", "        self._last_entropy = float(entropy)\n", "\n"),
    Mutation("entropy-bonus-sign", O + "base.py", "loss = loss - self.entropy_loss(inputs, metrics)",
             "loss = loss + self.entropy_loss(inputs, metrics)"),
    Mutation("entropy-aggregation-none-ignored", O + "base.py",
             "mode = bonus.aggregation if bonus.aggregation is not None else self.regularizer_aggregation()",
             'mode = bonus.aggregation or "token_mean"'),
    Mutation("entropy-adaptive-zero-coef-disabled", O + "base.py",
             "return bonus is not None and (bonus.coef != 0.0 or bonus.adaptive)", "return bonus is not None and bonus.coef != 0.0"),
    Mutation("entropy-coef-metric-not-a-share", O + "base.py",
             'metrics["entropy_coef"] = (coef * inputs.mask.sum() / inputs.normalizers.num_tokens).detach()',
             'metrics["entropy_coef"] = torch.tensor(coef)'),
    Mutation("entropy-state-not-loaded", O + "base.py", 'self._entropy_coef = float(state["entropy_coef"])',
             "self._entropy_coef = self._entropy_coef"),
    # ---- GRPO family ------------------------------------------------------------------------------------
    Mutation("grpo-clip-frac-low-bound", O + "grpo.py", "(ratio < 1.0 - self.epsilon_low) & (adv < 0)",
             "(ratio < 1.0 + self.epsilon_low) & (adv < 0)"),
    Mutation("grpo-clip-frac-high-eps", O + "grpo.py", "(ratio > 1.0 + self.epsilon_high) & (adv > 0)",
             "(ratio > 1.0 + self.epsilon_low) & (adv > 0)"),
    Mutation("grpo-clip-frac-low-any-sign", O + "grpo.py", "(ratio < 1.0 - self.epsilon_low) & (adv < 0)",
             "(ratio < 1.0 - self.epsilon_low)"),
    Mutation("grpo-clip-bounds-swapped", O + "grpo.py", "ratio.clamp(1.0 - self.epsilon_low, 1.0 + self.epsilon_high)",
             "ratio.clamp(1.0 - self.epsilon_high, 1.0 + self.epsilon_low)"),
    Mutation("grpo-min-to-max", O + "grpo.py", "per_token = -torch.min(ratio * adv, clipped * adv)",
             "per_token = -torch.max(ratio * adv, clipped * adv)"),
    Mutation("grpo-ratio-detached", O + "grpo.py", "ratio = torch.exp(inputs.logp - inputs.old_logp)",
             "ratio = torch.exp(inputs.logp.detach() - inputs.old_logp)"),
    Mutation("grpo-dual-clip-max", O + "grpo.py", "torch.where(adv < 0, torch.min(per_token, bound), per_token)",
             "torch.where(adv < 0, torch.max(per_token, bound), per_token)"),
    Mutation("grpo-dual-clip-any-sign", O + "grpo.py", "torch.where(adv < 0, torch.min(per_token, bound), per_token)",
             "torch.min(per_token, bound)"),
    Mutation("grpo-dual-frac-any-sign", O + "grpo.py", "dual = (adv < 0) & (per_token > bound)", "dual = per_token > bound"),
    Mutation("grpo-loss-scale-factor-dropped", O + "grpo.py",
             "return aggregate(per_token, mask, self.aggregation, norm, self.loss_scale_factor), metrics",
             "return aggregate(per_token, mask, self.aggregation, norm), metrics"),
    Mutation("drgrpo-epsilon-high-ignored", O + "dr_grpo.py", "epsilon_high=epsilon if epsilon_high is None else epsilon_high",
             "epsilon_high=epsilon"),
    Mutation("dapo-default-aggregation", O + "dapo.py", 'aggregation: Aggregation = "token_mean",',
             'aggregation: Aggregation = "seq_mean_token_mean",'),
    Mutation("dapo-default-symmetric", O + "dapo.py", "epsilon_high: float = 0.28,", "epsilon_high: float = 0.2,"),
    Mutation("abc-bounds-swapped", O + "abc_grpo.py", "ratio.clamp(1.0 - self.epsilon_2, 1.0 + self.epsilon_1)",
             "ratio.clamp(1.0 - self.epsilon_1, 1.0 + self.epsilon_2)"),
    Mutation("abc-zero-advantage-positive", O + "abc_grpo.py", "positive = adv > 0  # [B, 1]", "positive = adv >= 0  # [B, 1]"),
    Mutation("abc-q3-wrong-eps", O + "abc_grpo.py", "negative & (ratio < 1.0 - self.epsilon_4)", "negative & (ratio < 1.0 - self.epsilon_2)"),
    # ---- CISPO, GSPO, GMPO, RGRA, GTPO --------------------------------------------------------------------
    Mutation("cispo-floor-ignored", O + "cispo.py", "weight = ratio.clamp(min=self.epsilon_min, max=self.epsilon_max)",
             "weight = ratio.clamp(max=self.epsilon_max)"),
    Mutation("cispo-weight-not-detached", O + "cispo.py", "ratio = torch.exp(inputs.logp.detach() - inputs.old_logp)",
             "ratio = torch.exp(inputs.logp - inputs.old_logp)"),
    Mutation("cispo-trl-frac-any-sign", O + "cispo.py", "token_fraction((ratio > self.epsilon_max) & (adv > 0), mask, norm)",
             "token_fraction(ratio > self.epsilon_max, mask, norm)"),
    Mutation("cispo-frac-one-sided", O + "cispo.py", "clipped = clipped | (ratio < self.epsilon_min)", "clipped = clipped"),
    Mutation("gspo-token-ratio", O + "gspo.py", "ratio = torch.exp(seq_log_ratio + inputs.logp - inputs.logp.detach())",
             "ratio = torch.exp(inputs.logp - inputs.old_logp)"),
    Mutation("gspo-seq-ratio-unmasked", O + "gspo.py", "((inputs.logp - inputs.old_logp) * inputs.mask).sum(dim=1, keepdim=True)",
             "(inputs.logp - inputs.old_logp).sum(dim=1, keepdim=True)"),
    Mutation("gspo-kl-weight-detached", O + "gspo.py", "return torch.exp(_sequence_log_ratio(inputs))",
             "return torch.exp(_sequence_log_ratio(inputs)).detach()"),
    Mutation("gspo-seq-ratio-not-detached", O + "gspo.py", "seq_log_ratio = _sequence_log_ratio(inputs).detach()  # [B, 1]",
             "seq_log_ratio = _sequence_log_ratio(inputs)  # [B, 1]"),
    Mutation("gspo-default-epsilon", O + "gspo.py", "epsilon_low: float = 3e-4,", "epsilon_low: float = 3e-3,"),
    Mutation("gspo-seq-metric-per-token", O + "gspo.py", '"clip_frac_low_seq": sequence_fraction(low.squeeze(1), mask, norm)',
             '"clip_frac_low_seq": token_fraction(low, mask, norm)'),
    Mutation("gspo-aggregation-ignored", O + "gspo.py",
             "return aggregate(per_token, mask, self.aggregation, norm, self.loss_scale_factor), metrics",
             'return aggregate(per_token, mask, "seq_mean_token_mean", norm, self.loss_scale_factor), metrics'),
    Mutation("gspo-min-to-max", O + "gspo.py", "per_token = -torch.min(ratio * adv, clipped * adv)",
             "per_token = -torch.max(ratio * adv, clipped * adv)"),
    Mutation("gmpo-sides-swapped", O + "gmpo.py", "torch.where(adv > 0, torch.min(log_ratio, bounded), torch.max(log_ratio, bounded))",
             "torch.where(adv > 0, torch.max(log_ratio, bounded), torch.min(log_ratio, bounded))"),
    Mutation("gmpo-bounds-swapped", O + "gmpo.py", "log_ratio.clamp(-self.epsilon_low, self.epsilon_high)",
             "log_ratio.clamp(-self.epsilon_high, self.epsilon_low)"),
    Mutation("gmpo-out-of-range-zero-adv", O + "gmpo.py", '"out_of_range_frac_pos": token_fraction(outside & (adv > 0), mask, norm)',
             '"out_of_range_frac_pos": token_fraction(outside & (adv >= 0), mask, norm)'),
    Mutation("gmpo-mean-unmasked", O + "gmpo.py", "seq_ratio = torch.exp((clipped * mask).sum(dim=1) / lengths)",
             "seq_ratio = torch.exp(clipped.sum(dim=1) / lengths)"),
    Mutation("rgra-ratio-form", O + "rgra.py", "per_token = -adv * inputs.logp  # [B, T]",
             "per_token = -adv * torch.exp(inputs.logp - inputs.logp.detach())  # [B, T]"),
    Mutation("rgra-kl-weight-off-policy", O + "rgra.py", "return torch.exp(inputs.logp - inputs.logp.detach())",
             "return torch.exp(inputs.logp - inputs.old_logp)"),
    Mutation("gtpo-ratio-not-detached", O + "gtpo.py", "ratio = torch.exp(inputs.logp - inputs.logp.detach())",
             "ratio = torch.exp(inputs.logp - inputs.logp)"),
    Mutation("gtpo-filter-inclusive", O + "gtpo.py", "filtered = mean_entropy > self.entropy_threshold",
             "filtered = mean_entropy >= self.entropy_threshold"),
    Mutation("gtpo-entropy-shaping-sign", O + "gtpo.py", "inputs.advantages - self.entropy_coef * mean_entropy",
             "inputs.advantages + self.entropy_coef * mean_entropy"),
    Mutation("gtpo-no-conflict-norm", O + "gtpo.py", "weights = weights / conflict.sum(dim=1, keepdim=True).clamp(min=1).to(mask.dtype)",
             "weights = weights"),
    Mutation("gtpo-regularizer-token-mean", O + "gtpo.py", '    def regularizer_aggregation(self) -> Aggregation:\n        return "seq_mean_token_mean"',
             '    def regularizer_aggregation(self) -> Aggregation:\n        return "token_mean"'),
    Mutation("gtpo-zero-advantage-conflicts", O + "gtpo.py", "opposite = (g_sign.unsqueeze(1) * g_sign.unsqueeze(0)) < 0",
             "opposite = (g_sign.unsqueeze(1) * g_sign.unsqueeze(0)) <= 0"),
    # ---- advantages.py -------------------------------------------------------------------------------------
    Mutation("adv-biased-std", "lightning_grpo/advantages.py", "values = centred / (rewards.std(dim=1, keepdim=True) + self.eps)\n        elif",
             "values = centred / (rewards.std(dim=1, keepdim=True, correction=0) + self.eps)\n        elif"),
    Mutation("adv-zero-variance-not-zeroed", "lightning_grpo/advantages.py",
             "        flat = zero_variance_groups(rewards)  # [P]\n        values = values.masked_fill(flat.unsqueeze(1), 0.0)",
             "        flat = zero_variance_groups(rewards)  # [P]"),
    Mutation("adv-batch-scale-per-group", "lightning_grpo/advantages.py", "values = centred / (rewards.std() + self.eps)",
             "values = centred / (rewards.std(dim=1, keepdim=True) + self.eps)"),
    Mutation("adv-singleton-no-eps", "lightning_grpo/advantages.py",
             'values = rewards / (1.0 + self.eps) if self.scale == "group" else rewards', "values = rewards"),
    Mutation("adv-singleton-always-allowed", "lightning_grpo/advantages.py", "rewards.shape[1] < self.min_group_size",
             "rewards.shape[1] < 1"),
    Mutation("agpo-minus-overrides-plus", "lightning_grpo/advantages.py", "minus = flat & all_bad & ~all_good", "minus = flat & all_bad"),
    Mutation("agpo-drop-keeps", "lightning_grpo/advantages.py", "keep = keep & ~flat.unsqueeze(1)", "keep = keep"),
    Mutation("agpo-correct-all-wrong-not-flat", "lightning_grpo/advantages.py", "flat = correct.all(dim=1) | (~correct).all(dim=1)",
             "flat = correct.all(dim=1)"),
    # ---- module.py: the update loop ------------------------------------------------------------------------
    Mutation("loop-logp-old-recomputed", "lightning_grpo/module.py", "                step = minibatch_backward(\n",
             "                old_logp = self._frozen_logprobs(self.policy, rollout) if multi_update else None\n"
             "                step = minibatch_backward(\n"),
    Mutation("loop-old-is-current", "lightning_grpo/module.py", "old = old_logp[rows] if old_logp is not None else logp.detach()",
             "old = logp.detach()"),
    Mutation("loop-epochs-not-multi-update", "lightning_grpo/module.py", "multi_update = hp.updates_per_rollout * hp.epochs > 1",
             "multi_update = hp.updates_per_rollout > 1"),
    Mutation("loop-num-sequences-counts-empty", "lightning_grpo/module.py",
             "torch.stack([(mask[mini].sum(1) > 0).sum().float(), mask[mini].sum()])",
             "torch.stack([torch.tensor(float(len(mini))), mask[mini].sum()])"),
    Mutation("loop-truncation-mask-inverted", "lightning_grpo/module.py", "mask = mask * (~rollout.truncated).unsqueeze(1)",
             "mask = mask * rollout.truncated.unsqueeze(1)"),
    Mutation("loop-valid-ignored", "lightning_grpo/module.py", "            mask = mask * rollout.valid.unsqueeze(1)\n", "            pass\n"),
    Mutation("loop-keep-ignored", "lightning_grpo/module.py", "mask = rollout.completion_mask.float() * keep.unsqueeze(1)",
             "mask = rollout.completion_mask.float()"),
    Mutation("loop-grad-not-zeroed", "lightning_grpo/module.py",
             "        optimizer.step()\n        optimizer.zero_grad(set_to_none=True)\n", "        optimizer.step()\n"),
    Mutation("loop-no-scheduler-step", "lightning_grpo/module.py", "        scheduler.step()\n        return grad_norm.detach()",
             "        return grad_norm.detach()"),
    Mutation("loop-no-grad-clip", "lightning_grpo/module.py",
             'max_norm = self.hparams.max_grad_norm if self.hparams.max_grad_norm is not None else float("inf")',
             'max_norm = float("inf")'),
    Mutation("loop-nonfinite-not-skipped", "lightning_grpo/module.py", "if not torch.isfinite(grad_norm):", "if False:"),
    Mutation("loop-entropy-step-per-sequence", "lightning_grpo/module.py", "(self._all_sum(step.entropy_sum) / counts[1]).item()",
             "(self._all_sum(step.entropy_sum) / counts[0]).item()"),
    Mutation("loop-entropy-not-differentiable", "lightning_grpo/module.py", "entropy_grad=objective.differentiable_entropy,",
             "entropy_grad=False,"),
    Mutation("loop-entropy-sum-unmasked", "lightning_grpo/module.py", "entropy_sum = entropy_sum + (entropy.detach() * rows_mask).sum()",
             "entropy_sum = entropy_sum + entropy.detach().sum()"),
    Mutation("loop-mismatch-all-updates", "lightning_grpo/module.py", "                    if update == 0:\n                        logp_mismatch = step.logp_mismatch",
             "                    logp_mismatch = torch.maximum(logp_mismatch, step.logp_mismatch)\n                    if update == 0:\n                        pass"),
    Mutation("loop-empty-minibatch-steps", "lightning_grpo/module.py", "if counts[1].item() == 0:", "if False:"),
    Mutation("loop-objective-state-not-loaded", "lightning_grpo/module.py",
             '        self.objective.load_state_dict(checkpoint.get("objective_state", {}))\n', ""),
    Mutation("loop-advantage-groups-transposed", "lightning_grpo/module.py", "rewards = rollout.rewards.view(-1, g)  # [P, G]",
             "rewards = rollout.rewards.view(g, -1).t()  # [P, G]"),
    Mutation("loop-world-scaling", "lightning_grpo/module.py", "backward=lambda loss: self.manual_backward(loss * world)",
             "backward=lambda loss: self.manual_backward(loss)",
             equivalent="world = 1 in a single-process test (tests/test_distributed.py covers 2 ranks)"),
    # ---- metrics.py ------------------------------------------------------------------------------------------
    Mutation("passk-boundary", "lightning_grpo/metrics.py", "if n - c < k:", "if n - c <= k:"),
    Mutation("passk-factor", "lightning_grpo/metrics.py", "miss *= 1.0 - k / i", "miss *= 1.0 - (k - 1) / i"),
    Mutation("maj-tie-last", "lightning_grpo/metrics.py",
             "return next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)",
             "return max(i for i, a in enumerate(answers) if a is not None and counts[a] == best)"),
    Mutation("eval-eligible-strict", "lightning_grpo/metrics.py", "eligible = (n >= k).nonzero()", "eligible = (n > k).nonzero()"),
    Mutation("eval-voted-strict", "lightning_grpo/metrics.py", "voted = maj >= 0", "voted = maj > 0"),
    Mutation("eval-last-record-wins", "lightning_grpo/metrics.py", 'reduce="amin"', 'reduce="amax"'),
    Mutation("eval-length-per-prompt", "lightning_grpo/metrics.py", 'out["length_mean"] = rec[:, _LEN_SUM].sum() / samples',
             'out["length_mean"] = rec[:, _LEN_SUM].sum() / rec.shape[0]'),
    Mutation("eval-greedy-over-all", "lightning_grpo/metrics.py", 'out["accuracy"] = rec[greedy, _GREEDY_CORRECT].sum() / count',
             'out["accuracy"] = rec[greedy, _GREEDY_CORRECT].sum() / rec.shape[0]'),
    # ---- logprobs.py (entropy gradient) and the AGPO length reward --------------------------------------------
    Mutation("logprobs-entropy-grad-no-H", "lightning_grpo/logprobs.py",
             "weight = (out + entropy[block].unsqueeze(-1)).mul_(-upstream_h[block])", "weight = out.mul(-upstream_h[block])"),
    Mutation("logprobs-entropy-always-detached", "lightning_grpo/logprobs.py", "        if not entropy_grad:\n            ctx.mark_non_differentiable(entropy)",
             "        ctx.mark_non_differentiable(entropy)"),
    Mutation("agpo-length-own-correct-value", "lightning_grpo/rewards/length.py", "verdicts = [abs(v - correct_value) <= _EPS",
             "verdicts = [abs(v - 1.0) <= _EPS"),
    Mutation("agpo-length-all-correct-rewarded", "lightning_grpo/rewards/length.py",
             "if not correct or len(correct) == len(members):", "if not correct:"),
    Mutation("agpo-length-order-unchecked", "lightning_grpo/rewards/length.py",
             "if names.index(self.correctness) > names.index(self.name):", "if False:"),
]


def tests_for(path: str) -> list[list[str]]:
    for prefix, tests in TESTS_FOR.items():
        if path.startswith(prefix):
            return tests
    raise KeyError(f"no test set for {path}")


def copy_repo(target: Path) -> None:
    for name in ("lightning_grpo", "tests", "configs", "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target / name)


def run_one(work: Path, mutation: Mutation, timeout: float) -> tuple[str, float, str]:
    path = work / mutation.path
    original = path.read_text()
    count = original.count(mutation.before)
    if count != 1:
        return "stale", 0.0, f"original text found {count} times"
    path.write_text(original.replace(mutation.before, mutation.after))
    env = {**os.environ, "PYTHONPATH": str(work), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    status, detail = "survived", ""
    try:
        for stage in tests_for(mutation.path):
            command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *stage]
            try:
                result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                status, detail = "killed", f"timeout after {timeout:.0f} s in {stage}"
                break
            # pytest exits 0 when every test passed, 1 when some failed; anything else is a broken run
            status = {0: "survived", 1: "killed"}.get(result.returncode, "error")
            lines = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR")) or " passed" in line]
            detail = lines[0][:160] if lines else f"exit {result.returncode}: {(result.stdout + result.stderr)[-300:]!r}"
            if status != "survived":
                break
    finally:
        path.write_text(original)
    return status, time.perf_counter() - start, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the mutations whose id contains this text (comma-separated: any)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutation's test run")
    args = parser.parse_args()
    selected = [m for m in MUTATIONS if any(part in m.id for part in args.only.split(","))]
    if args.list:
        for m in selected:
            print(f"{m.id:40s} {m.path}{'  (equivalent: ' + m.equivalent + ')' if m.equivalent else ''}")
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="mutation_check_") as tmp:
        work = Path(tmp)
        copy_repo(work)
        for i, mutation in enumerate(selected, 1):
            status, seconds, detail = run_one(work, mutation, args.timeout)
            results.append((mutation, status))
            print(f"[{i}/{len(selected)}] {status:8s} {seconds:6.1f}s {mutation.id:40s} {detail}", flush=True)
    counted = [(m, s) for m, s in results if not m.equivalent and s not in ("stale", "error")]
    killed = sum(s == "killed" for _, s in counted)
    print(f"\nkilled {killed} of {len(counted)} behaviour-changing mutants ({100 * killed / max(len(counted), 1):.1f}%)")
    for m, s in results:
        if s != "killed":
            print(f"  {s}: {m.id} ({m.path}){' — equivalent: ' + m.equivalent if m.equivalent else ''}")


if __name__ == "__main__":
    main()
