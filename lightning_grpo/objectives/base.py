"""The objective interface: what every loss receives, how per-token losses are aggregated, and the
regularisers every objective shares (the KL term to a reference and the entropy bonus).

An objective maps tensors to ``(loss, metrics)``. It never touches the model, the optimizer or the
data. The module calls it once per micro-batch; the normalisers in :class:`Normalizers` span the
whole optimizer step (every micro-batch on every rank), so the micro-batch losses add up to the
step's loss and splitting a batch never changes the update (docs/algorithms.md §1, "Aggregation").

Metrics follow the same rule: each value is this micro-batch's *contribution* to the step's value
(a token fraction is divided by the global token count, and so on), so the module sums them over
micro-batches and ranks.

A subclass implements :meth:`Objective.policy_loss` (the surrogate and its own metrics); the base
class's ``__call__`` adds, when configured,

- the KL term ``β · aggregate(w · kl_t)`` (:meth:`Objective.kl_loss`): estimator k1, k2, k3 or the
  straight-through k1+/k3+, and the optional importance weight w = ρ *with its gradient*
  (``kl_ratio_weighted``, TRL's ``use_bias_correction_kl``);
- the entropy bonus ``− c · aggregate(H_t)`` (:class:`EntropyBonus`), with a static coefficient c
  or an adaptive one steered towards a target entropy (TRL's ``entropy_coef`` /
  ``use_adaptive_entropy``, Skywork-OR1). The adaptive coefficient is state: the module calls
  :meth:`Objective.on_optimizer_step` after each optimizer step and checkpoints
  :meth:`Objective.state_dict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import Tensor

Aggregation = Literal["seq_mean_token_mean", "token_mean", "seq_mean_token_sum", "constant_norm", "token_sum"]
KLEstimator = Literal["k1", "k2", "k3", "k1+", "k3+"]

AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
KL_ESTIMATORS: tuple[str, ...] = get_args(KLEstimator)


@dataclass(frozen=True)
class Normalizers:
    """Denominators over one optimizer step: all micro-batches, all ranks.

    ``num_sequences`` counts completions with at least one loss token (a row with no loss token
    carries no information; TRL and verl's trainers count it, see docs/algorithms.md §11). ``max_length``
    is the completion budget (``max_new_tokens``), the default constant of ``constant_norm``.
    """

    num_sequences: float
    num_tokens: float
    max_length: float


@dataclass
class ObjectiveInputs:
    """Everything an objective may use for one micro-batch of B completions, T completion positions."""

    logp: Tensor  # [B, T] log π_θ of each completion token, graph-connected
    old_logp: Tensor  # [B, T] log π_old (detached); equals logp.detach() when on-policy
    advantages: Tensor  # [B] one advantage per completion
    mask: Tensor  # [B, T] float loss mask (1 on loss tokens)
    normalizers: Normalizers
    ref_logp: Tensor | None = None  # [B, T] log π_ref, present when β > 0
    # [B, T] token entropy under π_θ, nats; graph-connected when ``Objective.differentiable_entropy``
    entropy: Tensor | None = None
    completion_ids: Tensor | None = None  # [B, T] generated token ids
    group_ids: Tensor | None = None  # [B] index of each completion's prompt group
    token_weights: Tensor | None = None  # [B, T] from ``Objective.rollout_token_weights``, if any


@dataclass(frozen=True)
class EntropyBonus:
    """Entropy regularisation, ``loss ← loss − c · aggregate(H_t)`` (H_t the token entropy in nats).

    Static (``adaptive=False``): c = ``coef`` throughout (TRL ``entropy_coef``, verl
    ``actor.entropy_coeff``). Adaptive (``adaptive=True``, TRL ``use_adaptive_entropy``, from
    Skywork-OR1): c starts at ``coef``; after every optimizer step, with H̄ the step's masked mean
    token entropy over all ranks, c ← min(c + ``coef_delta``, ``coef_max``) if H̄ ≤ ``target``, else
    c ← max(c − ``coef_delta``, ``coef_min``). The bonus is *applied* only while the last step's
    H̄ ≤ ``target`` (so not at all in the first step, before any measurement), as in TRL.

    ``aggregation``: how H_t becomes one number. ``token_mean`` (default, TRL: the mean token entropy
    whatever the loss type, so c means the same for every objective); ``None`` uses the objective's
    own aggregation (verl aggregates the entropy with ``loss_agg_mode``).

    Defaults follow TRL 1.16: coef 0 (set it), target 0.2 nats, delta 0.005, bounds [0, 1].
    """

    coef: float = 0.0
    adaptive: bool = False
    target: float = 0.2
    coef_delta: float = 0.005
    coef_min: float = 0.0
    coef_max: float = 1.0
    aggregation: Aggregation | None = "token_mean"

    def __post_init__(self) -> None:
        if self.aggregation is not None and self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown entropy aggregation {self.aggregation!r}; expected one of {AGGREGATIONS} or None")
        if self.adaptive:
            if self.coef_delta <= 0:
                raise ValueError(f"coef_delta must be > 0 for the adaptive entropy bonus, got {self.coef_delta}")
            if self.coef_min > self.coef_max:
                raise ValueError(f"coef_min ({self.coef_min}) must be <= coef_max ({self.coef_max})")
            if self.target < 0:
                raise ValueError(f"target entropy must be >= 0 nats, got {self.target}")


class Objective:
    """Base class: the six shared options, the KL term, the entropy bonus and their state.

    The shared options are declared here only. A subclass declares its own options, re-declares a
    shared one only to change its default (DAPO: ``aggregation="token_mean"``), forwards the rest
    as ``**shared`` to ``super().__init__`` and implements :meth:`policy_loss`. The CLI (jsonargparse)
    follows the ``**shared`` forwarding, so every objective still lists and accepts all its options
    flat: ``--model.objective=DAPO --model.objective.beta=0.01``.
    """

    beta: float = 0.0
    kl_estimator: KLEstimator = "k3"
    kl_ratio_weighted: bool = False
    aggregation: Aggregation = "seq_mean_token_mean"
    loss_scale_factor: float | None = None
    entropy_bonus: EntropyBonus | None = None
    # adaptive entropy controller state (TRL: entropy_coef and _last_world_entropy)
    _entropy_coef: float = 0.0
    _last_entropy: float = math.inf

    def __init__(
        self,
        *,
        beta: float = 0.0,
        kl_estimator: KLEstimator = "k3",
        kl_ratio_weighted: bool = False,
        aggregation: Aggregation = "seq_mean_token_mean",
        loss_scale_factor: float | None = None,
        entropy_bonus: EntropyBonus | None = None,
    ) -> None:
        """
        Args:
            beta: KL coefficient; 0 loads no reference model at all.
            kl_estimator: k1, k2, k3, or verl's straight-through k1+ / k3+ (used when beta > 0).
            kl_ratio_weighted: add w · kl_t with w the importance ratio *with* its gradient (TRL's
                ``use_bias_correction_kl``), instead of the paper's kl_t.
            aggregation: how per-token losses become one loss (docs/algorithms.md §1).
            loss_scale_factor: the constant K of ``constant_norm`` (None: max_new_tokens).
            entropy_bonus: entropy regularisation (static or adaptive), None = off.
        """
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"unknown KL estimator {kl_estimator!r}; expected one of {KL_ESTIMATORS}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS}")
        if loss_scale_factor is not None and loss_scale_factor <= 0:
            raise ValueError(f"loss_scale_factor must be > 0 (or None: max_new_tokens), got {loss_scale_factor}")
        if entropy_bonus is not None and not isinstance(entropy_bonus, EntropyBonus):
            raise TypeError(f"entropy_bonus must be an EntropyBonus or None, got {type(entropy_bonus).__name__}")
        self.beta = beta
        self.kl_estimator = kl_estimator
        self.kl_ratio_weighted = kl_ratio_weighted
        self.aggregation = aggregation
        self.loss_scale_factor = loss_scale_factor
        self.entropy_bonus = entropy_bonus
        self._entropy_coef = entropy_bonus.coef if entropy_bonus is not None else 0.0
        self._last_entropy = math.inf

    # ---- what the module asks ---------------------------------------------------------------------
    @property
    def needs_reference(self) -> bool:
        return self.beta > 0

    @property
    def differentiable_entropy(self) -> bool:
        """True when the loss has an entropy bonus, so ``inputs.entropy`` must carry its gradient."""
        bonus = self.entropy_bonus
        return bonus is not None and (bonus.coef != 0.0 or bonus.adaptive)

    @property
    def adaptive_entropy(self) -> bool:
        """True when :meth:`on_optimizer_step` needs the step's mean token entropy."""
        return self.entropy_bonus is not None and self.entropy_bonus.adaptive

    def rollout_token_weights(
        self, completion_ids: Tensor, mask: Tensor, advantages: Tensor, group_ids: Tensor
    ) -> Tensor | None:
        """Per-token weights that need whole groups (e.g. GTPO's conflict tokens), or None.

        Called once per rollout batch on this rank's whole batch, before it is split into
        mini/micro-batches (groups never span ranks). Shapes: ids, mask [N, T]; advantages,
        group_ids [N]. The result [N, T] reaches ``__call__`` sliced as ``inputs.token_weights``.
        """
        return None

    # ---- the loss ----------------------------------------------------------------------------------
    def policy_loss(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        """The surrogate alone (no KL, no entropy bonus): this micro-batch's share and its metrics."""
        raise NotImplementedError

    def __call__(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        loss, metrics = self.policy_loss(inputs)
        if self.beta > 0:
            loss = loss + self.kl_loss(inputs, metrics)
        if self.differentiable_entropy:
            loss = loss - self.entropy_loss(inputs, metrics)
        return loss, metrics

    def regularizer_aggregation(self) -> Aggregation:
        """The aggregation of the KL term (and of the entropy bonus when it names none)."""
        return self.aggregation

    def kl_weight(self, inputs: ObjectiveInputs) -> Tensor:
        """The importance weight of ``kl_ratio_weighted``: ρ = exp(logp − logp_old) [B, T], with its gradient."""
        return torch.exp(inputs.logp - inputs.old_logp)

    def kl_loss(self, inputs: ObjectiveInputs, metrics: dict[str, Tensor]) -> Tensor:
        """β · aggregate(w · kl_t) with w = ρ (gradient kept) when ``kl_ratio_weighted``, else 1.

        Adds ``kl`` to ``metrics``: the masked token mean of w · kl_t (TRL's ``kl``).
        """
        if inputs.ref_logp is None:
            raise ValueError(
                f"{type(self).__name__} with beta = {self.beta} > 0 needs ref_logp; the module must load a reference model"
            )
        kl = kl_penalty(inputs.logp, inputs.ref_logp, self.kl_estimator)  # [B, T]
        if self.kl_ratio_weighted:
            kl = kl * self.kl_weight(inputs)  # [B, T]
        metrics["kl"] = (kl.detach() * inputs.mask).sum() / inputs.normalizers.num_tokens
        return self.beta * aggregate(
            kl, inputs.mask, self.regularizer_aggregation(), inputs.normalizers, self.loss_scale_factor
        )

    def applied_entropy_coef(self) -> float:
        """The coefficient this step's entropy bonus uses (0 while an adaptive one is gated off)."""
        bonus = self.entropy_bonus
        if bonus is None:
            return 0.0
        if bonus.adaptive and not self._last_entropy <= bonus.target:
            return 0.0
        return self._entropy_coef

    def entropy_loss(self, inputs: ObjectiveInputs, metrics: dict[str, Tensor]) -> Tensor:
        """c · aggregate(H_t), to be subtracted. Adds ``entropy_loss`` (aggregate(H_t), verl's name) and
        ``entropy_coef`` (the applied c) to ``metrics``, both as this micro-batch's shares."""
        bonus = self.entropy_bonus
        assert bonus is not None
        if inputs.entropy is None:
            raise ValueError(f"{type(self).__name__} has an entropy bonus but received no inputs.entropy")
        mode = bonus.aggregation if bonus.aggregation is not None else self.regularizer_aggregation()
        entropy = aggregate(inputs.entropy, inputs.mask, mode, inputs.normalizers, self.loss_scale_factor)
        coef = self.applied_entropy_coef()
        metrics["entropy_loss"] = entropy.detach()
        metrics["entropy_coef"] = (coef * inputs.mask.sum() / inputs.normalizers.num_tokens).detach()
        return coef * entropy

    # ---- state of the adaptive entropy coefficient --------------------------------------------------
    def on_optimizer_step(self, entropy: float) -> None:
        """After each optimizer step: the step's masked mean token entropy over all ranks (nats)."""
        bonus = self.entropy_bonus
        if bonus is None or not bonus.adaptive:
            return
        if entropy <= bonus.target:
            self._entropy_coef = min(self._entropy_coef + bonus.coef_delta, bonus.coef_max)
        else:
            self._entropy_coef = max(self._entropy_coef - bonus.coef_delta, bonus.coef_min)
        self._last_entropy = float(entropy)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must carry for an exact resume (empty when the objective has no state)."""
        if not self.adaptive_entropy:
            return {}
        return {"entropy_coef": self._entropy_coef, "last_entropy": self._last_entropy}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "entropy_coef" in state:
            self._entropy_coef = float(state["entropy_coef"])
            self._last_entropy = float(state["last_entropy"])


def kl_penalty(logp: Tensor, ref_logp: Tensor, estimator: KLEstimator = "k3") -> Tensor:
    """Per-token KL(π_θ || π_ref) estimate from samples of π_θ (docs/algorithms.md §1).

    k1 = logp − ref; k2 = ½ (logp − ref)²; k3 = exp(ref − logp) − (ref − logp) − 1 (unbiased, ≥ 0).
    ``k1+`` / ``k3+`` (verl): the value of k1 / k3 with the gradient of k2 (straight-through).
    """
    delta = ref_logp - logp  # [B, T]
    base = estimator[:-1] if estimator.endswith("+") else estimator
    if base == "k3":
        value = torch.exp(delta) - delta - 1.0
    elif base == "k1":
        value = -delta
    elif base == "k2":
        value = 0.5 * delta.square()
    else:
        raise ValueError(f"unknown KL estimator {estimator!r}; expected one of {KL_ESTIMATORS}")
    if estimator in ("k1+", "k3+"):
        k2 = 0.5 * delta.square()
        return k2 - k2.detach() + value.detach()
    if estimator.endswith("+"):
        raise ValueError(f"unknown KL estimator {estimator!r}; expected one of {KL_ESTIMATORS}")
    return value


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    mode: Aggregation,
    normalizers: Normalizers,
    loss_scale_factor: float | None = None,
) -> Tensor:
    """Reduce a per-token loss [B, T] to this micro-batch's share of the step loss (docs/algorithms.md §1).

    ``token_mean`` Σ M·L / N_tokens; ``seq_mean_token_mean`` Σ_i (Σ_t M·L / |o_i|) / n;
    ``seq_mean_token_sum`` Σ M·L / n; ``constant_norm`` Σ M·L / (n · K) with K =
    ``loss_scale_factor`` or, by default, ``normalizers.max_length`` (verl's
    ``seq-mean-token-sum-norm``, TRL's ``dr_grpo``); ``token_sum`` Σ M·L (verl's ``token-sum``).
    """
    masked = per_token * mask  # [B, T]
    if mode == "token_mean":
        return masked.sum() / normalizers.num_tokens
    if mode == "seq_mean_token_mean":
        lengths = mask.sum(dim=1).clamp(min=1.0)  # [B]
        return (masked.sum(dim=1) / lengths).sum() / normalizers.num_sequences
    if mode == "seq_mean_token_sum":
        return masked.sum() / normalizers.num_sequences
    if mode == "constant_norm":
        scale = loss_scale_factor if loss_scale_factor is not None else normalizers.max_length
        return masked.sum() / (normalizers.num_sequences * scale)
    if mode == "token_sum":
        return masked.sum()
    raise ValueError(f"unknown aggregation {mode!r}; expected one of {AGGREGATIONS}")


def token_fraction(condition: Tensor, mask: Tensor, normalizers: Normalizers) -> Tensor:
    """This micro-batch's share of the fraction of loss tokens where ``condition`` holds (detached)."""
    return ((condition.float() * mask).sum() / normalizers.num_tokens).detach()


def sequence_fraction(condition: Tensor, mask: Tensor, normalizers: Normalizers) -> Tensor:
    """This micro-batch's share of the fraction of (non-empty) sequences where ``condition`` [B] holds."""
    nonempty = (mask.sum(dim=1) > 0).float()  # [B]
    return ((condition.float() * nonempty).sum() / normalizers.num_sequences).detach()
