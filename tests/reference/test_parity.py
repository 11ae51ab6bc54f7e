"""Differential tests against the reference implementations: TRL 1.16 and verl 0.9.1.

Each case builds a random float64 batch (padding, an empty completion, advantages of both signs
and zero, token ratios inside and outside every clip range), runs the project's objective and the
peer's own code on it, and compares the loss, the gradient with respect to the per-token log-probs
(and the token entropy when an entropy bonus is on) and the metrics both define, to 1e-9 absolute +
1e-6 relative.

How the peers are run
---------------------
* **TRL**: ``GRPOTrainer._compute_loss`` itself, called as an unbound function on a light stand-in
  object (:class:`TRLStandIn`) that carries the attributes it reads (``loss_type``, ``beta``,
  ``epsilon_low``/``epsilon_high``, ``args``, ``accelerator``, ...) and whose
  ``_get_per_token_logps_and_entropies`` returns our leaf tensors instead of running a model. One
  process, no gradient accumulation (``current_gradient_accumulation_steps = 1``,
  ``steps_per_generation = 1``). Building a real trainer needs a model, a dataset and a tokenizer
  and runs nothing more of the loss.
* **verl**: the pure functions of ``verl.trainer.ppo.core_algos`` (``compute_policy_loss_*``,
  ``agg_loss``, ``kl_penalty``, ``compute_grpo_outcome_advantage``), composed as verl's
  ``workers/utils/losses.py::ppo_loss`` composes them (pg_loss − entropy_coeff · agg(entropy) +
  kl_loss_coef · agg(kl)), with ``global_batch_info`` = our normalisers. verl's package imports Ray
  and tensordict; it cannot be a dependency of the project (its pins clash with our transformers),
  so these tests run where it was installed by hand:
  ``pip install --no-deps verl==0.9.1 && pip install omegaconf tensordict codetiming orjson ray``,
  then delete the top-level ``tests`` package verl's wheel puts in site-packages (it shadows this
  repository's ``tests`` namespace, and the distributed tests' callbacks stop importing);
  elsewhere they are skipped with that reason.

Normalisers: the project counts only non-empty completions in n; TRL's ``grpo``/``dr_grpo``/
``luspo`` and verl's trainer (``global_batch_size`` = the mini-batch size) count every row. The
tests pass the peer's count (``Normalizers(num_sequences=B)``), which is the only difference on a
batch with an empty completion (docs/algorithms.md §11).

Mapping: project configuration ↔ peer configuration
----------------------------------------------------
TRL 1.16 ``GRPOConfig`` (token level unless said; ``epsilon``=ε_low, ``epsilon_high``=ε_high):

=====================================================  ==============================================
project                                                TRL
=====================================================  ==============================================
GRPO(aggregation="seq_mean_token_mean")                loss_type="grpo"
GRPO(aggregation="token_mean")                         loss_type="bnpo"
GRPO(aggregation="seq_mean_token_sum")                 loss_type="luspo" (token level)
DrGRPO(epsilon, epsilon_high)                          loss_type="dr_grpo", epsilon, epsilon_high
DAPO(epsilon_low, epsilon_high)                        loss_type="dapo" (normaliser: the batch's tokens)
CISPO(epsilon_max=ε)                                   loss_type="cispo", epsilon_high=ε
GRPO(dual_clip=c)   (c > 1 + ε_high)                   delta=c
beta=β                                                 beta=β, use_bias_correction_kl=False
beta=β, kl_ratio_weighted=True                         beta=β, use_bias_correction_kl=True (default)
entropy_bonus=EntropyBonus(coef=c)                     entropy_coef=c
EntropyBonus(coef, adaptive=True, target, coef_delta,  entropy_coef, use_adaptive_entropy=True,
             coef_min, coef_max)                       entropy_target, entropy_coef_delta/_min/_max
GSPO(aggregation="seq_mean_token_mean")                importance_sampling_level="sequence",
                                                       loss_type="grpo"
GSPO(aggregation="token_mean")                         sequence level, loss_type="bnpo" or "dapo"
GSPO(aggregation="constant_norm")                      sequence level, loss_type="dr_grpo"
GSPO(aggregation="seq_mean_token_sum")                 sequence level, loss_type="luspo"
GSPO(kl_ratio_weighted=True)                           sequence level, use_bias_correction_kl=True
metrics clip_frac_low / clip_frac_high (token)         clip_ratio/low_mean, clip_ratio/high_mean;
                                                       their sum clip_ratio/region_mean
GSPO clip_frac_low_seq / clip_frac_high_seq            clip_ratio/low_mean, /high_mean (sequence level)
CISPO clip_frac_high                                   cispo_clip_ratio
kl                                                     kl
EntropyBonus state after each step                     entropy_coef (logged after the update)
=====================================================  ==============================================

TRL options with no counterpart, and why: ``loss_type="sapo"`` (soft sigmoid gate) and ``"vespo"``
(gamma-shaped sequence weights): methods the project does not offer; ``loss_type="cispo"`` at
sequence level (CISPO caps token weights); ``top_entropy_quantile`` < 1 (a global entropy quantile
mask), ``off_policy_mask_threshold`` (DeepSeek-V3.2 sequence masking) and the vLLM importance
correction (the project samples with the policy itself): not implemented;
``delta`` ≤ 1 + ε_high (clamps positive-advantage ratios too: not dual clip).

verl 0.9.1 (``actor.policy_loss.loss_mode``, ``actor.loss_agg_mode``):

=====================================================  ==============================================
project                                                verl
=====================================================  ==============================================
GRPO(epsilon_low, epsilon_high, dual_clip=c)           loss_mode="vanilla", clip_ratio_low/_high,
                                                       clip_ratio_c=c
aggregation token_mean / seq_mean_token_mean /         loss_agg_mode token-mean / seq-mean-token-mean
seq_mean_token_sum / constant_norm / token_sum         / seq-mean-token-sum / seq-mean-token-sum-norm /
                                                       token-sum
loss_scale_factor=K                                    loss_scale_factor=K
GSPO(epsilon_low, epsilon_high, aggregation)           loss_mode="gspo"
CISPO(epsilon_min=1 − l, epsilon_max=1 + h)            loss_mode="cispo", clip_ratio_low=l, _high=h
GMPO(epsilon_low, epsilon_high)                        loss_mode="geo_mean"
RGRA(aggregation)                                      loss_mode="gpg"
beta=β, kl_estimator=k1/k2/k3/k1+/k3+                  use_kl_loss, kl_loss_coef=β, kl_loss_type=
                                                       k1/k2/k3 (low_var_kl)/k1+/k3+
EntropyBonus(coef=c, aggregation=None)                 entropy_coeff=c (aggregated with loss_agg_mode)
GroupNormalized(scale="group"/"none", eps)             compute_grpo_outcome_advantage,
(allow_singleton_groups for G = 1)                     norm_adv_by_std_in_grpo=True/False, epsilon
metrics clip_frac_low + clip_frac_high                 pg_clipfrac (vanilla, gspo)
GRPO dual_clip_frac                                    pg_clipfrac_lower (vanilla)
CISPO clip_frac                                        pg_clipfrac (cispo)
GMPO out_of_range_frac_pos / _neg                      pg_clipfrac / pg_clipfrac_lower (geo_mean)
kl (with token_mean)                                   kl_loss
EntropyBonus entropy_loss                              actor/entropy_loss
=====================================================  ==============================================

verl options with no counterpart, and why: loss modes ``dppo_tv``/``dppo_kl`` (divergence-based
trust regions), ``sapo``, ``clip_cov``/``kl_cov`` (covariance-selected tokens), ``dro``,
``bypass_mode`` (rollout-correction modes): methods the project does not offer; ``kl_loss_type``
``abs`` and ``full``; ``rollout_is_weights`` (the project samples with the policy itself).
"""

from __future__ import annotations

import inspect
import math
import re
from collections import defaultdict
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
import torch

from lightning_grpo.advantages import GroupNormalized, MeanCentered
from lightning_grpo.objectives import (
    CISPO,
    DAPO,
    GMPO,
    GRPO,
    GSPO,
    RGRA,
    DrGRPO,
    EntropyBonus,
    Normalizers,
    Objective,
    ObjectiveInputs,
)

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer", reason="TRL is a test dependency (pip install -e '.[dev]')")
GRPOTrainer = trl_grpo.GRPOTrainer

F64 = torch.float64
ATOL, RTOL = 1e-9, 1e-6
MAX_COMPLETION_LENGTH = 9  # TRL's max_completion_length / our max_new_tokens, > T so it is told apart from T

# Token ratios kept ≥ 0.02 away from every bound the cases use: 1 ± 0.2, 1.28, 3, 5, e^±0.4 (0.67, 1.49).
RATIO_GRID = [0.3, 0.5, 0.72, 0.78, 0.85, 0.95, 1.0, 1.05, 1.1, 1.16, 1.24, 1.32, 1.4, 1.6, 2.2, 3.5, 6.0]
LENGTHS = [6, 4, 1, 0, 5, 6, 3, 2]  # row 3 is an empty completion
ADVANTAGES = [1.3, -0.7, 0.4, 0.9, -1.6, 0.0, -0.2, 0.8]


class Batch(SimpleNamespace):
    logp: torch.Tensor  # [B, T]
    old_logp: torch.Tensor  # [B, T]
    ref_logp: torch.Tensor  # [B, T]
    advantages: torch.Tensor  # [B]
    mask: torch.Tensor  # [B, T]
    entropy: torch.Tensor  # [B, T]


def make_batch(seed: int, sequence_level: bool = False) -> Batch:
    """Token ratios drawn from RATIO_GRID (or, for sequence-level cases, spread around a per-row ratio)."""
    gen = torch.Generator().manual_seed(seed)
    b, t = len(LENGTHS), max(LENGTHS)
    mask = (torch.arange(t).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)).to(F64)  # [B, T]
    logp = -0.05 - 2.5 * torch.rand(b, t, generator=gen, dtype=F64)
    if sequence_level:
        row = torch.tensor([0.7, 0.93, 1.04, 1.0, 1.3, 0.97, 1.12, 0.86], dtype=F64).log()[torch.randperm(b, generator=gen)]
        log_ratio = row.unsqueeze(1) + 0.05 * torch.randn(b, t, generator=gen, dtype=F64)
    else:
        grid = torch.tensor(RATIO_GRID, dtype=F64)
        log_ratio = grid[torch.randint(len(RATIO_GRID), (b, t), generator=gen)].log()
    ref = logp + 0.4 * torch.randn(b, t, generator=gen, dtype=F64)
    adv = torch.tensor(ADVANTAGES, dtype=F64)[torch.randperm(b, generator=gen)]
    adv[3] = 0.9  # the empty row keeps a non-zero advantage: it must still contribute nothing
    entropy = 0.05 + 1.5 * torch.rand(b, t, generator=gen, dtype=F64)
    if not sequence_level:
        # Coverage the planted bugs need, whatever the seed: on the longest rows of each advantage sign,
        # ratios inside (1 − ε, 1 + ε) and beyond every bound (0.8, 1.2, 1.28, e^±0.4, 3, 5).
        lengths = mask.sum(1)
        for sign, ratios in ((-1, [0.5, 0.95, 1.1, 1.24, 1.6, 3.5]), (1, [0.3, 0.72, 0.95, 1.24, 1.6, 6.0])):
            rows = [i for i in range(b) if torch.sign(adv[i]) == sign]
            row = max(rows, key=lambda i: lengths[i])
            n = int(lengths[row])
            log_ratio[row, :n] = torch.tensor(ratios[:n], dtype=F64).log()
    batch = Batch(logp=logp, old_logp=logp - log_ratio, ref_logp=ref, advantages=adv, mask=mask, entropy=entropy)
    return batch


SEEDS = [0, 1, 2]


def peer_normalizers(batch: Batch) -> Normalizers:
    """The peers' convention: every row counts in n (see the module docstring)."""
    return Normalizers(
        num_sequences=float(batch.mask.shape[0]), num_tokens=float(batch.mask.sum()), max_length=float(MAX_COMPLETION_LENGTH)
    )


def run_ours(objective: Objective, batch: Batch, norm: Normalizers) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Loss, d loss / d logp [B, T], d loss / d entropy [B, T] (zeros when unused), metrics (floats)."""
    logp = batch.logp.clone().requires_grad_(True)
    entropy = batch.entropy.clone().requires_grad_(True)
    inputs = ObjectiveInputs(
        logp=logp, old_logp=batch.old_logp, advantages=batch.advantages, mask=batch.mask, normalizers=norm,
        ref_logp=batch.ref_logp, entropy=entropy,
    )
    loss, metrics = objective(inputs)
    return (loss.detach(), *_grads(loss, logp, entropy), {k: float(v) for k, v in metrics.items()})


def _grads(loss: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g_logp, g_entropy = torch.autograd.grad(loss, [logp, entropy], allow_unused=True)
    return (
        g_logp if g_logp is not None else torch.zeros_like(logp),
        g_entropy if g_entropy is not None else torch.zeros_like(entropy),
    )


Metric = str | Callable[[dict], float]  # a metric's name, or a function of all metrics (e.g. a sum)


def _value(spec: Metric, metrics: dict) -> float:
    return spec(metrics) if callable(spec) else metrics[spec]


def _sum(*names: str) -> Callable[[dict], float]:
    return lambda m: sum(m[n] for n in names)


def assert_same(ours: tuple, peer: tuple, metric_pairs: dict[Metric, Metric]) -> None:
    loss, g_logp, g_entropy, metrics = ours
    peer_loss, peer_g_logp, peer_g_entropy, peer_metrics = peer
    torch.testing.assert_close(loss, peer_loss, atol=ATOL, rtol=RTOL, msg=lambda m: f"loss: {m}")
    torch.testing.assert_close(g_logp, peer_g_logp, atol=ATOL, rtol=RTOL, msg=lambda m: f"d loss / d logp: {m}")
    torch.testing.assert_close(g_entropy, peer_g_entropy, atol=ATOL, rtol=RTOL, msg=lambda m: f"d loss / d H: {m}")
    assert g_logp.abs().sum() > 0
    for ours_name, peer_name in metric_pairs.items():
        expected = _value(peer_name, peer_metrics)
        assert _value(ours_name, metrics) == pytest.approx(expected, abs=ATOL, rel=RTOL), (ours_name, peer_name)


# ============================================================================================ TRL


class _Accelerator:
    """What _compute_loss asks of accelerate on one process."""

    num_processes = 1
    sync_gradients = True

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    gather_for_metrics = gather


class TRLStandIn:
    """The attributes ``GRPOTrainer._compute_loss`` reads, set as ``GRPOTrainer.__init__`` sets them."""

    def __init__(
        self,
        loss_type: str,
        epsilon: float = 0.2,
        epsilon_high: float | None = None,
        beta: float = 0.0,
        use_bias_correction_kl: bool = True,
        delta: float | None = None,
        importance_sampling_level: str = "token",
        entropy_coef: float = 0.0,
        use_adaptive_entropy: bool = False,
        entropy_target: float = 0.2,
        entropy_coef_delta: float = 0.005,
        entropy_coef_min: float = 0.0,
        entropy_coef_max: float = 1.0,
    ) -> None:
        self.loss_type = loss_type
        self.epsilon_low = epsilon
        self.epsilon_high = epsilon_high if epsilon_high is not None else epsilon
        self.beta = beta
        self.importance_sampling_level = importance_sampling_level
        self.max_completion_length = MAX_COMPLETION_LENGTH
        self.top_entropy_quantile = 1.0
        self.off_policy_mask_threshold = None
        self.use_vllm = False
        self.vllm_importance_sampling_correction = False
        self.aux_loss_enabled = False
        self.current_gradient_accumulation_steps = 1
        self.entropy_coef = entropy_coef
        self.use_adaptive_entropy = use_adaptive_entropy
        self._entropy_bonus_enabled = entropy_coef != 0.0 or use_adaptive_entropy
        self._last_world_entropy = float("inf")
        self._entropy_window_stats = None
        self.args = SimpleNamespace(
            use_bias_correction_kl=use_bias_correction_kl,
            delta=delta,
            steps_per_generation=1,
            entropy_target=entropy_target,
            entropy_coef_delta=entropy_coef_delta,
            entropy_coef_min=entropy_coef_min,
            entropy_coef_max=entropy_coef_max,
        )
        self.accelerator = _Accelerator()
        self.model = torch.nn.Linear(1, 1).train()
        self._metrics: dict[str, defaultdict] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._leaves: tuple[torch.Tensor, torch.Tensor] | None = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, **kwargs):
        assert self._leaves is not None and logits_to_keep == self._leaves[0].shape[1]
        return self._leaves[0], self._leaves[1], None

    def run(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        logp = batch.logp.clone().requires_grad_(True)
        entropy = batch.entropy.clone().requires_grad_(True)
        self._leaves = (logp, entropy)
        b, t = batch.mask.shape
        inputs: dict[str, Any] = {
            "prompt_ids": torch.ones(b, 2, dtype=torch.long),
            "prompt_mask": torch.ones(b, 2, dtype=torch.long),
            "completion_ids": torch.ones(b, t, dtype=torch.long),
            "completion_mask": batch.mask,
            "advantages": batch.advantages,
            "old_per_token_logps": batch.old_logp,
            "num_items_in_batch": batch.mask.sum(),
        }
        if self.beta != 0.0:
            inputs["ref_per_token_logps"] = batch.ref_logp
        loss = GRPOTrainer._compute_loss(self, self.model, inputs)
        metrics = {k: v[-1] for k, v in self._metrics["train"].items()}
        self._metrics["train"].clear()
        return (loss.detach(), *_grads(loss, logp, entropy), metrics)


CLIP = {
    "clip_frac_low": "clip_ratio/low_mean",
    "clip_frac_high": "clip_ratio/high_mean",
    _sum("clip_frac_low", "clip_frac_high"): "clip_ratio/region_mean",
}
SEQ_CLIP = {"clip_frac_low_seq": "clip_ratio/low_mean", "clip_frac_high_seq": "clip_ratio/high_mean"}
ENTROPY = EntropyBonus(coef=0.013)

# (id, our objective, TRL stand-in keyword arguments, metric pairs ours -> TRL)
TRL_TOKEN_CASES = [
    ("grpo", lambda: GRPO(beta=0.0), dict(loss_type="grpo"), CLIP),
    ("grpo-asym", lambda: GRPO(beta=0.0, epsilon_high=0.28), dict(loss_type="grpo", epsilon_high=0.28), CLIP),
    ("grpo-kl-paper", lambda: GRPO(beta=0.04), dict(loss_type="grpo", beta=0.04, use_bias_correction_kl=False), {**CLIP, "kl": "kl"}),
    ("grpo-kl-ratio", lambda: GRPO(beta=0.04, kl_ratio_weighted=True), dict(loss_type="grpo", beta=0.04), {**CLIP, "kl": "kl"}),
    ("grpo-delta", lambda: GRPO(beta=0.0, dual_clip=3.0), dict(loss_type="grpo", delta=3.0), CLIP),
    ("grpo-entropy", lambda: GRPO(beta=0.0, entropy_bonus=ENTROPY), dict(loss_type="grpo", entropy_coef=0.013), {**CLIP, "entropy_coef": "entropy_coef"}),
    ("bnpo", lambda: GRPO(beta=0.0, aggregation="token_mean"), dict(loss_type="bnpo"), CLIP),
    ("bnpo-kl-ratio", lambda: GRPO(beta=0.1, aggregation="token_mean", kl_ratio_weighted=True), dict(loss_type="bnpo", beta=0.1), {**CLIP, "kl": "kl"}),
    ("luspo-token", lambda: GRPO(beta=0.0, aggregation="seq_mean_token_sum"), dict(loss_type="luspo"), CLIP),
    ("dr_grpo", lambda: DrGRPO(), dict(loss_type="dr_grpo"), CLIP),
    ("dr_grpo-asym", lambda: DrGRPO(epsilon=0.2, epsilon_high=0.28), dict(loss_type="dr_grpo", epsilon_high=0.28), CLIP),
    ("dr_grpo-kl-ratio-entropy", lambda: DrGRPO(beta=0.05, kl_ratio_weighted=True, entropy_bonus=ENTROPY),
     dict(loss_type="dr_grpo", beta=0.05, entropy_coef=0.013), {**CLIP, "kl": "kl"}),
    ("dapo", lambda: DAPO(), dict(loss_type="dapo", epsilon_high=0.28), CLIP),
    ("dapo-kl-ratio-delta", lambda: DAPO(beta=0.02, kl_ratio_weighted=True, dual_clip=4.0),
     dict(loss_type="dapo", epsilon_high=0.28, beta=0.02, delta=4.0), {**CLIP, "kl": "kl"}),
    ("dapo-entropy", lambda: DAPO(entropy_bonus=EntropyBonus(coef=-0.02)), dict(loss_type="dapo", epsilon_high=0.28, entropy_coef=-0.02), CLIP),
    ("cispo", lambda: CISPO(), dict(loss_type="cispo", epsilon_high=5.0), {"clip_frac_high": "cispo_clip_ratio"}),
    ("cispo-tight", lambda: CISPO(epsilon_max=1.3), dict(loss_type="cispo", epsilon_high=1.3), {"clip_frac_high": "cispo_clip_ratio"}),
    ("cispo-kl-ratio-entropy", lambda: CISPO(beta=0.03, kl_ratio_weighted=True, entropy_bonus=ENTROPY),
     dict(loss_type="cispo", epsilon_high=5.0, beta=0.03, entropy_coef=0.013), {"clip_frac_high": "cispo_clip_ratio", "kl": "kl"}),
    ("cispo-kl-paper", lambda: CISPO(beta=0.03), dict(loss_type="cispo", epsilon_high=5.0, beta=0.03, use_bias_correction_kl=False), {"kl": "kl"}),
]

SEQ = dict(importance_sampling_level="sequence", epsilon=0.1, epsilon_high=0.15)
TRL_SEQUENCE_CASES = [
    ("gspo-grpo", lambda: GSPO(0.1, 0.15), dict(loss_type="grpo", **SEQ), SEQ_CLIP),
    ("gspo-paper-eps", lambda: GSPO(), dict(loss_type="grpo", importance_sampling_level="sequence", epsilon=3e-4, epsilon_high=4e-4), SEQ_CLIP),
    ("gspo-bnpo", lambda: GSPO(0.1, 0.15, aggregation="token_mean"), dict(loss_type="bnpo", **SEQ), SEQ_CLIP),
    ("gspo-dapo", lambda: GSPO(0.1, 0.15, aggregation="token_mean"), dict(loss_type="dapo", **SEQ), SEQ_CLIP),
    ("gspo-dr_grpo", lambda: GSPO(0.1, 0.15, aggregation="constant_norm"), dict(loss_type="dr_grpo", **SEQ), SEQ_CLIP),
    ("gspo-luspo", lambda: GSPO(0.1, 0.15, aggregation="seq_mean_token_sum"), dict(loss_type="luspo", **SEQ), SEQ_CLIP),
    ("gspo-kl-ratio", lambda: GSPO(0.1, 0.15, beta=0.05, kl_ratio_weighted=True), dict(loss_type="grpo", beta=0.05, **SEQ), {**SEQ_CLIP, "kl": "kl"}),
    ("gspo-kl-paper", lambda: GSPO(0.1, 0.15, beta=0.05), dict(loss_type="grpo", beta=0.05, use_bias_correction_kl=False, **SEQ), {**SEQ_CLIP, "kl": "kl"}),
    ("gspo-entropy", lambda: GSPO(0.1, 0.15, entropy_bonus=ENTROPY), dict(loss_type="grpo", entropy_coef=0.013, **SEQ), SEQ_CLIP),
]

TRL_MAPPED_LOSS_TYPES = {"grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo"}
TRL_UNMAPPED_LOSS_TYPES = {"sapo", "vespo"}  # methods the project does not offer (module docstring)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ours, trl_kwargs, metric_pairs", [pytest.param(*c[1:], id=c[0]) for c in TRL_TOKEN_CASES])
def test_trl_token_level(seed, ours, trl_kwargs, metric_pairs):
    batch = make_batch(seed)
    assert_same(run_ours(ours(), batch, peer_normalizers(batch)), TRLStandIn(**trl_kwargs).run(batch), metric_pairs)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ours, trl_kwargs, metric_pairs", [pytest.param(*c[1:], id=c[0]) for c in TRL_SEQUENCE_CASES])
def test_trl_sequence_level(seed, ours, trl_kwargs, metric_pairs):
    batch = make_batch(seed, sequence_level=True)
    ours_result = run_ours(ours(), batch, peer_normalizers(batch))
    assert_same(ours_result, TRLStandIn(**trl_kwargs).run(batch), metric_pairs)
    # and the sequences are clipped on some rows, not on others
    if trl_kwargs["epsilon"] == 0.1:
        assert 0 < ours_result[3]["clip_frac_low_seq"] + ours_result[3]["clip_frac_high_seq"] < 0.75


@pytest.mark.parametrize(
    "ours, trl_kwargs",
    [
        pytest.param(lambda b: GRPO(beta=0.0, entropy_bonus=b), dict(loss_type="grpo"), id="grpo"),
        pytest.param(lambda b: DAPO(beta=0.02, kl_ratio_weighted=True, entropy_bonus=b),
                     dict(loss_type="dapo", epsilon_high=0.28, beta=0.02), id="dapo-kl"),
        pytest.param(lambda b: GSPO(0.1, 0.15, entropy_bonus=b), dict(loss_type="grpo", **SEQ), id="gspo"),
    ],
)
def test_trl_adaptive_entropy_over_steps(ours, trl_kwargs):
    """Six optimizer steps whose entropy crosses the target both ways: the gated, steered coefficient,
    the loss and both gradients equal TRL's at every step, and so does the coefficient after it."""
    bonus = EntropyBonus(coef=0.01, adaptive=True, target=0.6, coef_delta=0.004, coef_min=0.002, coef_max=0.02)
    objective = ours(bonus)
    trl = TRLStandIn(**trl_kwargs, entropy_coef=0.01, use_adaptive_entropy=True, entropy_target=0.6,
                     entropy_coef_delta=0.004, entropy_coef_min=0.002, entropy_coef_max=0.02)
    applied = []
    for step, scale in enumerate([0.2, 0.25, 0.3, 1.5, 1.6, 0.1]):
        batch = make_batch(step, sequence_level=isinstance(objective, GSPO))
        batch.entropy = batch.entropy * scale
        norm = peer_normalizers(batch)
        applied.append(objective.applied_entropy_coef())
        ours_result = run_ours(objective, batch, norm)
        assert_same(ours_result, trl.run(batch), {})
        objective.on_optimizer_step(float((batch.entropy * batch.mask).sum() / batch.mask.sum()))
        assert objective.state_dict()["entropy_coef"] == pytest.approx(trl.entropy_coef, abs=1e-15)
        assert objective.state_dict()["last_entropy"] == pytest.approx(trl._last_world_entropy, abs=1e-12)
    # off at the first step (no measurement yet), then up while below target, down (and off) above it
    assert applied == pytest.approx([0.0, 0.014, 0.018, 0.02, 0.0, 0.0])


def test_every_trl_loss_type_is_mapped_or_documented():
    source = inspect.getsource(GRPOTrainer._compute_loss)
    found = set(re.findall(r'loss_type == "(\w+)"', source))
    for group in re.findall(r"loss_type in \[([^\]]*)\]", source):
        found |= set(re.findall(r'"(\w+)"', group))
    assert found == TRL_MAPPED_LOSS_TYPES | TRL_UNMAPPED_LOSS_TYPES
    covered = {c[2]["loss_type"] for c in TRL_TOKEN_CASES + TRL_SEQUENCE_CASES}
    assert covered == TRL_MAPPED_LOSS_TYPES


def test_detached_ratio_in_the_kl_would_be_caught():
    """The bug this suite was written for: ρ.detach() · kl has TRL's loss value but not its gradient."""

    class DetachedRatioKL(GRPO):
        def kl_weight(self, inputs):
            return super().kl_weight(inputs).detach()

    batch = make_batch(0)
    peer = TRLStandIn(loss_type="grpo", beta=0.04).run(batch)
    ours = run_ours(DetachedRatioKL(beta=0.04, kl_ratio_weighted=True), batch, peer_normalizers(batch))
    torch.testing.assert_close(ours[0], peer[0], atol=ATOL, rtol=RTOL)
    assert (ours[1] - peer[1]).abs().max() > 1e-4


# =========================================================================================== verl


VERL_INSTALL = (
    "pip install --no-deps verl==0.9.1 && pip install omegaconf tensordict codetiming orjson ray, "
    "then delete the stray site-packages/tests package verl's wheel installs"
)


def _verl():
    try:
        from verl.trainer.ppo import core_algos
        from verl.workers.config import ActorConfig
    except ImportError as err:  # not installed, or a missing dependency of verl's package
        pytest.skip(f"verl 0.9.1 is not importable ({err}); to run these tests: {VERL_INSTALL}")
    return core_algos, ActorConfig


AGG = {
    "token_mean": "token-mean",
    "seq_mean_token_mean": "seq-mean-token-mean",
    "seq_mean_token_sum": "seq-mean-token-sum",
    "constant_norm": "seq-mean-token-sum-norm",
    "token_sum": "token-sum",
}
LOSS_SCALE_FACTOR = 7.0


def run_verl(
    loss_mode: str,
    batch: Batch,
    norm: Normalizers,
    agg: str,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 3.0,
    kl_type: str | None = None,
    kl_coef: float = 0.0,
    entropy_coeff: float = 0.0,
    loss_scale_factor: float | None = LOSS_SCALE_FACTOR,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """verl's ppo_loss composition of the pure core_algos functions, on our leaves."""
    core_algos, actor_config = _verl()
    config = actor_config(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, clip_ratio=clip_low,
                          clip_ratio_low=clip_low, clip_ratio_high=clip_high, clip_ratio_c=clip_c)
    info = dict(dp_size=1, batch_num_tokens=norm.num_tokens, global_batch_size=norm.num_sequences,
                loss_scale_factor=loss_scale_factor)
    config.global_batch_info.update(info)
    logp = batch.logp.clone().requires_grad_(True)
    entropy = batch.entropy.clone().requires_grad_(True)
    mask = batch.mask.bool()
    adv = batch.advantages.unsqueeze(1).expand_as(batch.mask) * batch.mask  # verl's token-level advantages
    pg_loss, metrics = core_algos.get_policy_loss_fn(loss_mode)(
        old_log_prob=batch.old_logp, log_prob=logp, advantages=adv, response_mask=mask, loss_agg_mode=agg, config=config
    )
    loss = pg_loss
    metrics = {k.removeprefix("actor/"): float(v) for k, v in metrics.items()}
    if entropy_coeff:
        entropy_loss = core_algos.agg_loss(entropy, mask, agg, **info)
        loss = loss - entropy_coeff * entropy_loss
        metrics["entropy_loss"] = float(entropy_loss.detach())
    if kl_type is not None:
        kl_loss = core_algos.agg_loss(core_algos.kl_penalty(logp, batch.ref_logp, kl_type), mask, agg, **info)
        loss = loss + kl_coef * kl_loss
        metrics["kl_loss"] = float(kl_loss)
    return (loss.detach(), *_grads(loss, logp, entropy), metrics)


VERL_CASES = [
    # (id, our factory taking the aggregation, verl kwargs, metric pairs)
    ("vanilla", lambda a: GRPO(beta=0.0, aggregation=a, dual_clip=3.0, loss_scale_factor=LOSS_SCALE_FACTOR),
     dict(loss_mode="vanilla"), {"dual_clip_frac": "pg_clipfrac_lower"}),
    ("vanilla-clip-higher", lambda a: DAPO(aggregation=a, dual_clip=2.5, loss_scale_factor=LOSS_SCALE_FACTOR),
     dict(loss_mode="vanilla", clip_high=0.28, clip_c=2.5), {"dual_clip_frac": "pg_clipfrac_lower"}),
    ("vanilla-entropy", lambda a: GRPO(beta=0.0, aggregation=a, dual_clip=3.0, loss_scale_factor=LOSS_SCALE_FACTOR,
                                       entropy_bonus=EntropyBonus(coef=0.02, aggregation=None)),
     dict(loss_mode="vanilla", entropy_coeff=0.02), {"entropy_loss": "entropy_loss"}),
    ("gspo", lambda a: GSPO(0.1, 0.15, aggregation=a, loss_scale_factor=LOSS_SCALE_FACTOR),
     dict(loss_mode="gspo", clip_low=0.1, clip_high=0.15), {}),
    ("cispo", lambda a: CISPO(epsilon_min=0.8, epsilon_max=1.2, aggregation=a, loss_scale_factor=LOSS_SCALE_FACTOR),
     dict(loss_mode="cispo"), {"clip_frac": "pg_clipfrac"}),
    ("cispo-wide", lambda a: CISPO(epsilon_min=0.5, epsilon_max=3.0, aggregation=a, loss_scale_factor=LOSS_SCALE_FACTOR),
     dict(loss_mode="cispo", clip_low=0.5, clip_high=2.0), {"clip_frac": "pg_clipfrac"}),
    ("gpg-rgra", lambda a: RGRA(beta=0.0, aggregation=a, loss_scale_factor=LOSS_SCALE_FACTOR), dict(loss_mode="gpg"), {}),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("aggregation", list(AGG))
@pytest.mark.parametrize("ours, verl_kwargs, metric_pairs", [pytest.param(*c[1:], id=c[0]) for c in VERL_CASES])
def test_verl_policy_losses(seed, aggregation, ours, verl_kwargs, metric_pairs):
    batch = make_batch(seed, sequence_level=verl_kwargs["loss_mode"] == "gspo")
    norm = peer_normalizers(batch)
    pairs = dict(metric_pairs)
    if verl_kwargs["loss_mode"] in ("vanilla", "gspo"):
        pairs[_sum("clip_frac_low", "clip_frac_high")] = "pg_clipfrac"
    ours_result = run_ours(ours(aggregation), batch, norm)
    assert_same(ours_result, run_verl(batch=batch, norm=norm, agg=AGG[aggregation], **verl_kwargs), pairs)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kl_estimator, kl_type", [("k1", "k1"), ("k2", "k2"), ("k3", "low_var_kl"), ("k1+", "k1+"), ("k3+", "k3+")])
@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "constant_norm"])
def test_verl_kl_loss(seed, kl_estimator, kl_type, aggregation):
    batch = make_batch(seed)
    norm = peer_normalizers(batch)
    objective = GRPO(beta=0.07, aggregation=aggregation, dual_clip=3.0, kl_estimator=kl_estimator, loss_scale_factor=LOSS_SCALE_FACTOR)
    pairs = {"kl": "kl_loss"} if aggregation == "token_mean" else {}
    ours = run_ours(objective, batch, norm)
    peer = run_verl("vanilla", batch, norm, AGG[aggregation], kl_type=kl_type, kl_coef=0.07)
    assert_same(ours, peer, pairs)
    rgra = run_ours(RGRA(beta=0.07, aggregation=aggregation, kl_estimator=kl_estimator, loss_scale_factor=LOSS_SCALE_FACTOR), batch, norm)
    assert_same(rgra, run_verl("gpg", batch, norm, AGG[aggregation], kl_type=kl_type, kl_coef=0.07), {})


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eps", [(0.4, 0.4), (0.2, 0.3)])
def test_verl_geo_mean(seed, eps):
    batch = make_batch(seed)
    norm = peer_normalizers(batch)
    ours = run_ours(GMPO(*eps), batch, norm)
    peer = run_verl("geo_mean", batch, norm, "token-mean", clip_low=eps[0], clip_high=eps[1])
    assert_same(ours, peer, {"out_of_range_frac_pos": "pg_clipfrac", "out_of_range_frac_neg": "pg_clipfrac_lower"})
    # the project's clip_frac (only the side that binds) is a different, smaller count
    assert ours[3]["clip_frac"] < peer[3]["pg_clipfrac"] + peer[3]["pg_clipfrac_lower"]


@pytest.mark.parametrize("group_size", [1, 2, 4])
@pytest.mark.parametrize("scale, norm_by_std", [("group", True), ("none", False)])
def test_verl_grpo_outcome_advantage(group_size, scale, norm_by_std):
    core_algos, _ = _verl()
    gen = torch.Generator().manual_seed(group_size)
    rewards = torch.randint(0, 3, (6, group_size), generator=gen).to(F64) * 0.5  # zero-variance groups likely
    rewards[0] = 1.0  # one zero-variance group for sure
    t = 5
    mask = torch.ones(rewards.numel(), t, dtype=F64)
    token_rewards = torch.zeros_like(mask)
    token_rewards[:, -1] = rewards.flatten()
    index = np.repeat(np.arange(rewards.shape[0]), group_size)
    expected, _ = core_algos.compute_grpo_outcome_advantage(token_rewards, mask, index, epsilon=1e-6,
                                                            norm_adv_by_std_in_grpo=norm_by_std)
    estimator = GroupNormalized(scale=scale, eps=1e-6, allow_singleton_groups=True)
    assert estimator.min_group_size == 1
    ours = estimator(rewards).values.flatten()
    torch.testing.assert_close(ours, expected[:, 0], atol=ATOL, rtol=RTOL)
    if scale == "none":
        torch.testing.assert_close(MeanCentered(allow_singleton_groups=True)(rewards).values.flatten(), expected[:, 0])


VERL_MAPPED_LOSS_MODES = {"vanilla", "gspo", "cispo", "geo_mean", "gpg"}
VERL_UNMAPPED_LOSS_MODES = {"dppo_tv", "dppo_kl", "sapo", "clip_cov", "kl_cov", "dro", "bypass_mode"}


def test_every_verl_loss_mode_is_mapped_or_documented():
    core_algos, _ = _verl()
    assert set(core_algos.POLICY_LOSS_REGISTRY) == VERL_MAPPED_LOSS_MODES | VERL_UNMAPPED_LOSS_MODES
    covered = {c[2]["loss_mode"] for c in VERL_CASES} | {"geo_mean"}
    assert covered == VERL_MAPPED_LOSS_MODES
    assert math.isclose(LOSS_SCALE_FACTOR, 7.0) and LOSS_SCALE_FACTOR != MAX_COMPLETION_LENGTH
