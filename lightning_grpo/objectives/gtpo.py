"""GTPO — Group-relative Trajectory-based Policy Optimization (Simoni et al., arXiv 2508.03772).

Not the unrelated "GTPO and GRPO-S" (arXiv 2508.04349). On-policy, no clipping, no KL, no
reference model (docs/algorithms.md §5). Pair it with :class:`lightning_grpo.advantages.MeanCentered`
(Â_i = r_i − mean_g r).

**Conflict tokens** (computed once per rollout batch in :meth:`GTPO.rollout_token_weights`, where
groups are whole). Within a group, among completions with Â ≠ 0, P = {Â > 0} and N = {Â < 0}. A
token of a completion in P (resp. N) at position t conflicts if some completion in N (resp. P)
carries the same token id at position t, both tokens being loss tokens; only each completion's
leading contiguous run of such positions counts. The same test is repeated with the completions
aligned at their last loss token (trailing run). Conflicting tokens get weight δ = ``w_pos`` (2.0)
in a positive completion — the shared structure is reinforced — and δ = ``w_neg`` (0) in a negative
one — its penalty is skipped; other tokens δ = 1. Padding never conflicts. Each completion's
weights are divided by max(1, its number of conflict tokens) (``conflict_norm``).

**Entropy filter** (in :meth:`__call__`). H̄_i = mean token entropy of completion i under the
current policy (value only). If H̄_i > τ the completion is filtered (Â_i = 0), else
Â_i ← Â_i − λ H̄_i. Note that this makes the advantage of a zero-variance group's completion
−λ H̄_i, not 0, as in the reference code.

**Loss** per completion, with ρ̃ = exp(logp − stopgrad(logp)) (value 1, gradient ∇logp; GTPO is
on-policy, so ``old_logp`` is not used):

    L_i = −Σ_t M ρ̃_t Â_i w_t / Σ_t M,    w_t = δ_t / max(1, #conflicts_i)

aggregated as the mean over completions (``completion_reduction="mean"``, default) or the sum
(``"sum"``, what the reference code ``gtpo_compute_loss`` does: it accumulates per-completion
losses). The sum scales the step with the number of completions, so the learning rate has to
absorb it; the mean keeps losses comparable with GRPO's.

Where we differ from the reference code (github winstonsmith1897/GTPO, ``build_conflict_mask``):
- a token in both the leading and the trailing run gets δ = w_pos once; the reference multiplies
  the two passes' weights, giving w_pos² = 4 (e.g. for completions shorter than the shared parts);
- padding is told apart by the loss mask, not by a fixed pad id (128004 there), and tokens past a
  completion's end never match another completion's token;
- the division by the conflict count, the entropy filter and the conflict sets follow the paper
  and the code alike (conflict sets use the advantage before the entropy shaping).

Defaults: w_pos = 2.0, w_neg = 0.0, τ = 0.7, λ = 0.1 (the authors' Qwen examples use τ = 1.02),
conflict_norm on, ``completion_reduction="mean"``. Metrics: ``conflict_token_frac`` (conflict tokens / loss tokens of the
rollout batch, reported as this micro-batch's token share of it), ``filtered_frac`` (completions
removed by the entropy filter), ``mean_entropy`` (mean over completions of H̄_i).

No TRL or verl configuration reproduces it. The base class's entropy bonus (``entropy_bonus``, a
separate thing from the entropy *filter* above) applies, averaged like the loss
(``seq_mean_token_mean`` unless the bonus names an aggregation); GTPO has no KL term, so of the
shared options of :class:`~lightning_grpo.objectives.base.Objective` it takes ``entropy_bonus`` only.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lightning_grpo.objectives.base import Aggregation, EntropyBonus, Objective, ObjectiveInputs, sequence_fraction


def _opposite_sign_match(ids: Tensor, valid: Tensor, sign: Tensor, group_ids: Tensor) -> Tensor:
    """[N, T] bool: some completion of the same group, with the opposite advantage sign, carries the
    same token id at the same position, both tokens valid. ``sign`` [N] in {−1, 0, 1}."""
    match = torch.zeros_like(valid)
    for group in torch.unique(group_ids):
        rows = (group_ids == group).nonzero(as_tuple=True)[0]  # [G]
        g_ids, g_valid, g_sign = ids[rows], valid[rows], sign[rows]  # [G, T], [G, T], [G]
        same = (g_ids.unsqueeze(1) == g_ids.unsqueeze(0)) & g_valid.unsqueeze(1) & g_valid.unsqueeze(0)  # [G, G, T]
        opposite = (g_sign.unsqueeze(1) * g_sign.unsqueeze(0)) < 0  # [G, G]
        match[rows] = (same & opposite.unsqueeze(-1)).any(dim=1)
    return match


def _leading_run(flags: Tensor) -> Tensor:
    """[N, T] bool: the contiguous run of True from position 0."""
    return torch.cumprod(flags.to(torch.int64), dim=1).bool()


def conflict_tokens(completion_ids: Tensor, mask: Tensor, advantages: Tensor, group_ids: Tensor) -> Tensor:
    """[N, T] bool: GTPO's conflict tokens (leading and trailing shared runs, see the module docstring).

    Shapes: completion_ids, mask [N, T]; advantages, group_ids [N]. The trailing test aligns every
    completion at its last loss token.
    """
    valid = mask > 0  # [N, T]
    sign = torch.sign(advantages).to(torch.int64)  # [N]
    n, t = valid.shape
    forward = _leading_run(_opposite_sign_match(completion_ids, valid, sign, group_ids)) & valid  # [N, T]

    # Right-align: position s of the aligned row holds position s − shift of the original row, where
    # shift = T − (last loss index + 1); positions before the shift are invalid.
    positions = torch.arange(t, device=mask.device)  # [T]
    end = torch.where(valid, positions + 1, torch.zeros_like(positions)).amax(dim=1)  # [N] last loss index + 1
    shift = (t - end).unsqueeze(1)  # [N, 1]
    source = positions.unsqueeze(0) - shift  # [N, T]
    inside = source >= 0  # [N, T]
    source = source.clamp(min=0)
    aligned_ids = completion_ids.gather(1, source)  # [N, T]
    aligned_valid = valid.gather(1, source) & inside  # [N, T]
    aligned_match = _opposite_sign_match(aligned_ids, aligned_valid, sign, group_ids)  # [N, T]
    aligned_run = _leading_run(aligned_match.flip(1)).flip(1) & aligned_valid  # [N, T] trailing run
    # Back to the original positions: original position p sits at aligned position p + shift.
    target = positions.unsqueeze(0) + shift  # [N, T]
    backward = aligned_run.gather(1, target.clamp(max=t - 1)) & (target < t) & valid  # [N, T]
    return forward | backward


class GTPO(Objective):
    def __init__(
        self,
        w_pos: float = 2.0,
        w_neg: float = 0.0,
        entropy_threshold: float = 0.7,
        entropy_coef: float = 0.1,
        conflict_norm: bool = True,
        completion_reduction: Literal["mean", "sum"] = "mean",
        entropy_bonus: EntropyBonus | None = None,
        **renamed: Any,
    ) -> None:
        """
        Args:
            w_pos: weight of a conflict token in a positive-advantage completion (paper 2.0).
            w_neg: weight of a conflict token in a negative-advantage completion (paper 0: skipped).
            entropy_threshold: τ, completions with mean token entropy above it are filtered (Â = 0).
            entropy_coef: λ, Â ← Â − λ · H̄ for completions kept by the filter.
            conflict_norm: divide each completion's weights by max(1, its number of conflict tokens).
            completion_reduction: ``mean`` of the per-completion losses (default) or their ``sum``
                (the reference code). Not the shared ``aggregation`` of the other objectives
                (GTPO's per-token reduction is fixed); the name ``aggregation`` is an error here.
            entropy_bonus: entropy regularisation (static or adaptive), None = off.
        """
        if w_pos < 0 or w_neg < 0:
            raise ValueError(f"conflict weights must be >= 0, got w_pos={w_pos}, w_neg={w_neg}")
        if entropy_threshold < 0:
            raise ValueError(f"entropy_threshold must be >= 0 (nats), got {entropy_threshold}")
        if entropy_coef < 0:
            raise ValueError(f"entropy_coef must be >= 0, got {entropy_coef}")
        if "aggregation" in renamed:
            raise TypeError(
                f"GTPO's aggregation={renamed['aggregation']!r} is now completion_reduction "
                "(mean or sum over completions); GTPO takes no per-token aggregation"
            )
        if renamed:
            raise TypeError(f"GTPO got unexpected options {sorted(renamed)}")
        if completion_reduction not in ("mean", "sum"):
            raise ValueError(f"unknown completion_reduction {completion_reduction!r}; expected 'mean' or 'sum'")
        super().__init__(beta=0.0, entropy_bonus=entropy_bonus)
        self.w_pos = w_pos
        self.w_neg = w_neg
        self.entropy_threshold = entropy_threshold
        self.entropy_coef = entropy_coef
        self.conflict_norm = conflict_norm
        self.completion_reduction = completion_reduction
        self._conflict_rate: Tensor | None = None

    def rollout_token_weights(
        self, completion_ids: Tensor, mask: Tensor, advantages: Tensor, group_ids: Tensor
    ) -> Tensor:
        """[N, T] weights δ_t / max(1, #conflicts_i) over this rank's whole rollout batch."""
        conflict = conflict_tokens(completion_ids, mask, advantages, group_ids)  # [N, T]
        adv = advantages.unsqueeze(1)  # [N, 1]
        conflict_weight = torch.where(adv > 0, self.w_pos, self.w_neg).to(mask.dtype)  # [N, 1]
        weights = torch.where(conflict, conflict_weight, torch.ones_like(mask))  # [N, T]
        if self.conflict_norm:
            weights = weights / conflict.sum(dim=1, keepdim=True).clamp(min=1).to(mask.dtype)
        tokens = mask.sum()
        self._conflict_rate = (conflict.to(mask.dtype).sum() / tokens.clamp(min=1.0)).detach()
        return weights * mask

    def regularizer_aggregation(self) -> Aggregation:
        return "seq_mean_token_mean"

    def policy_loss(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        mask, norm = inputs.mask, inputs.normalizers  # [B, T]
        if inputs.entropy is None:
            raise ValueError("GTPO needs the token entropy (inputs.entropy) for its entropy filter")
        lengths = mask.sum(dim=1).clamp(min=1.0)  # [B]
        mean_entropy = (inputs.entropy.detach() * mask).sum(dim=1) / lengths  # [B]
        filtered = mean_entropy > self.entropy_threshold  # [B]
        adv = torch.where(
            filtered, torch.zeros_like(inputs.advantages), inputs.advantages - self.entropy_coef * mean_entropy
        )  # [B]
        weights = inputs.token_weights if inputs.token_weights is not None else torch.ones_like(mask)  # [B, T]
        ratio = torch.exp(inputs.logp - inputs.logp.detach())  # [B, T], value 1, grad ∇logp
        per_token = -ratio * adv.unsqueeze(1) * weights  # [B, T]
        per_sequence = (per_token * mask).sum(dim=1) / lengths  # [B]
        loss = per_sequence.sum()
        if self.completion_reduction == "mean":
            loss = loss / norm.num_sequences
        nonempty = (mask.sum(dim=1) > 0).to(mask.dtype)  # [B]
        metrics = {
            "filtered_frac": sequence_fraction(filtered, mask, norm),
            "mean_entropy": ((mean_entropy * nonempty).sum() / norm.num_sequences).detach(),
        }
        if self._conflict_rate is not None:
            # the rollout's conflict rate, split among micro-batches by their share of loss tokens
            metrics["conflict_token_frac"] = self._conflict_rate.to(mask.device) * mask.sum() / norm.num_tokens
        return loss, metrics
