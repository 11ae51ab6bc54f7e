"""The objective interface: what every loss receives and how per-token losses are aggregated.

An objective maps tensors to ``(loss, metrics)``. It never touches the model, the optimizer or the
data. The module calls it once per micro-batch; the normalisers in :class:`Normalizers` span the
whole optimizer step (every micro-batch on every rank), so the micro-batch losses add up to the
step's loss and splitting a batch never changes the update (ALGORITHMS.md §1, "Aggregation").

Metrics follow the same rule: each value is this micro-batch's *contribution* to the step's value
(a token fraction is divided by the global token count, and so on), so the module sums them over
micro-batches and ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Aggregation = Literal["seq_mean_token_mean", "token_mean", "seq_mean_token_sum", "constant_norm"]
KLEstimator = Literal["k1", "k2", "k3"]


@dataclass(frozen=True)
class Normalizers:
    """Denominators over one optimizer step: all micro-batches, all ranks.

    ``num_sequences`` counts completions with at least one loss token (a row with no loss token
    carries no information; TRL and verl count it, see ALGORITHMS.md §11). ``max_length`` is the
    completion budget (``max_new_tokens``), the constant of Dr. GRPO's ``constant_norm``.
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
    entropy: Tensor | None = None  # [B, T] token entropy under π_θ (detached), nats
    completion_ids: Tensor | None = None  # [B, T] generated token ids
    group_ids: Tensor | None = None  # [B] index of each completion's prompt group
    token_weights: Tensor | None = None  # [B, T] from ``Objective.rollout_token_weights``, if any


class Objective:
    """Base class. Subclasses take typed hyper-parameters in ``__init__`` and implement ``__call__``.

    ``beta`` is the KL coefficient: with ``beta == 0`` no reference model is loaded at all.
    """

    beta: float = 0.0

    @property
    def needs_reference(self) -> bool:
        return self.beta > 0

    def rollout_token_weights(
        self, completion_ids: Tensor, mask: Tensor, advantages: Tensor, group_ids: Tensor
    ) -> Tensor | None:
        """Per-token weights that need whole groups (e.g. GTPO's conflict tokens), or None.

        Called once per rollout batch on this rank's whole batch, before it is split into
        mini/micro-batches (groups never span ranks). Shapes: ids, mask [N, T]; advantages,
        group_ids [N]. The result [N, T] reaches ``__call__`` sliced as ``inputs.token_weights``.
        """
        return None

    def __call__(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


def kl_penalty(logp: Tensor, ref_logp: Tensor, estimator: KLEstimator = "k3") -> Tensor:
    """Per-token KL(π_θ || π_ref) estimate from samples of π_θ (ALGORITHMS.md §1).

    k3 = exp(ref − logp) − (ref − logp) − 1 (unbiased, ≥ 0); k1 = logp − ref; k2 = ½ (logp − ref)².
    """
    delta = ref_logp - logp  # [B, T]
    if estimator == "k3":
        return torch.exp(delta) - delta - 1.0
    if estimator == "k1":
        return -delta
    if estimator == "k2":
        return 0.5 * delta.square()
    raise ValueError(f"unknown KL estimator {estimator!r}; expected one of 'k1', 'k2', 'k3'")


def aggregate(per_token: Tensor, mask: Tensor, mode: Aggregation, normalizers: Normalizers) -> Tensor:
    """Reduce a per-token loss [B, T] to this micro-batch's share of the step loss (ALGORITHMS.md §1)."""
    masked = per_token * mask  # [B, T]
    if mode == "token_mean":
        return masked.sum() / normalizers.num_tokens
    if mode == "seq_mean_token_mean":
        lengths = mask.sum(dim=1).clamp(min=1.0)  # [B]
        return (masked.sum(dim=1) / lengths).sum() / normalizers.num_sequences
    if mode == "seq_mean_token_sum":
        return masked.sum() / normalizers.num_sequences
    if mode == "constant_norm":
        return masked.sum() / (normalizers.num_sequences * normalizers.max_length)
    raise ValueError(
        f"unknown aggregation {mode!r}; expected one of "
        "'seq_mean_token_mean', 'token_mean', 'seq_mean_token_sum', 'constant_norm'"
    )


def token_fraction(condition: Tensor, mask: Tensor, normalizers: Normalizers) -> Tensor:
    """This micro-batch's share of the fraction of loss tokens where ``condition`` holds (detached)."""
    return ((condition.float() * mask).sum() / normalizers.num_tokens).detach()


def sequence_fraction(condition: Tensor, mask: Tensor, normalizers: Normalizers) -> Tensor:
    """This micro-batch's share of the fraction of (non-empty) sequences where ``condition`` [B] holds."""
    nonempty = (mask.sum(dim=1) > 0).float()  # [B]
    return ((condition.float() * nonempty).sum() / normalizers.num_sequences).detach()
