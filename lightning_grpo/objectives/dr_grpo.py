"""Dr. GRPO — "GRPO done right" (Liu et al., Understanding R1-Zero-Like Training, arXiv 2503.20783).

The paper removes GRPO's two normalisations that bias the update (docs/algorithms.md §7):

- the per-completion length normalisation 1/|o_i| (it favours long wrong answers and short right
  ones), replaced by one constant: loss = Σ_{i,t} M L_t / (n · L_max) (``constant_norm``), with
  L_max the generation budget (``max_new_tokens``, or ``loss_scale_factor``) and n the number of
  completions;
- the std in the advantage: Â_i = r_i − mean_g r. That is the advantage estimator's job: pair this
  objective with :class:`lightning_grpo.advantages.MeanCentered`
  (or ``GroupNormalized(scale="none")``).

Per token the surrogate is PPO's: L_t = −min(ρ Â, clip(ρ, 1 − ε, 1 + ε_high) Â), ε_high = ε unless
given (TRL's ``epsilon`` / ``epsilon_high``). No KL (β = 0).

Defaults: ε = ε_high = 0.2, β = 0, ``constant_norm``. Here n counts completions with at least one
loss token (see :class:`~lightning_grpo.objectives.base.Normalizers`). Options and metrics as
:class:`GRPO`.

Reproduces exactly (tests/reference): TRL 1.16 ``loss_type="dr_grpo"`` with ``epsilon`` and
``epsilon_high`` (TRL's n counts every row, empty ones too); verl 0.9.1 ``loss_mode="vanilla"``
with ``loss_agg_mode="seq-mean-token-sum-norm"`` and ``loss_scale_factor`` ↔ ``loss_scale_factor``
(docs/algorithms.md §11).
"""

from __future__ import annotations

from typing import Any

from lightning_grpo.objectives.base import Aggregation
from lightning_grpo.objectives.grpo import GRPO


class DrGRPO(GRPO):
    def __init__(
        self,
        epsilon: float = 0.2,
        epsilon_high: float | None = None,
        *,
        beta: float = 0.0,
        aggregation: Aggregation = "constant_norm",
        **options: Any,
    ) -> None:
        """
        Args:
            epsilon: lower clip range (and the upper one unless epsilon_high is given), ρ ≥ 1 − epsilon.
            epsilon_high: upper clip range, ρ ≤ 1 + epsilon_high; None = epsilon (symmetric).
            beta: KL coefficient; Dr. GRPO uses none (0).
            aggregation: ``constant_norm`` (Σ M·L / (n · L_max), L_max = loss_scale_factor or
                max_new_tokens); others for ablations.
            options: :class:`GRPO`'s dual_clip and the shared ones of :class:`Objective`.
        """
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        if epsilon_high is not None and epsilon_high < 0:
            raise ValueError(f"epsilon_high must be >= 0 (or None), got {epsilon_high}")
        super().__init__(
            epsilon_low=epsilon,
            epsilon_high=epsilon if epsilon_high is None else epsilon_high,
            beta=beta,
            aggregation=aggregation,
            **options,
        )
        self.epsilon = epsilon
