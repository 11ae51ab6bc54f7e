"""Dr. GRPO — "GRPO done right" (Liu et al., Understanding R1-Zero-Like Training, arXiv 2503.20783).

The paper removes GRPO's two normalisations that bias the update (ALGORITHMS.md §7):

- the per-completion length normalisation 1/|o_i| (it favours long wrong answers and short right
  ones), replaced by one constant: loss = Σ_{i,t} M L_t / (n · L_max) (``constant_norm``), with
  L_max the generation budget (``max_new_tokens``) and n the number of completions;
- the std in the advantage: Â_i = r_i − mean_g r. That is the advantage estimator's job: pair this
  objective with :class:`lightning_grpo.advantages.MeanCentered`
  (or ``GroupNormalized(scale="none")``).

Per token the surrogate is PPO's: L_t = −min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â). No KL (β = 0).

Defaults: ε = 0.2 (both sides), β = 0, ``constant_norm``. verl's ``seq-mean-token-sum-norm``
(0.9.1) and TRL's ``loss_type="dr_grpo"`` compute the same normaliser (ALGORITHMS.md §11).
Here n counts completions with at least one loss token (see :class:`Normalizers`). Metrics as
:class:`GRPO`.
"""

from __future__ import annotations

from lightning_grpo.objectives.base import Aggregation, KLEstimator
from lightning_grpo.objectives.grpo import GRPO


class DrGRPO(GRPO):
    def __init__(
        self,
        epsilon: float = 0.2,
        beta: float = 0.0,
        aggregation: Aggregation = "constant_norm",
        kl_estimator: KLEstimator = "k3",
    ) -> None:
        """
        Args:
            epsilon: symmetric clip range, 1 − epsilon ≤ ρ ≤ 1 + epsilon.
            beta: KL coefficient; Dr. GRPO uses none (0).
            aggregation: ``constant_norm`` (Σ M·L / (n · L_max)); others for ablations.
            kl_estimator: k1, k2 or k3 (only used when beta > 0).
        """
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        super().__init__(
            epsilon_low=epsilon, epsilon_high=epsilon, beta=beta, aggregation=aggregation, kl_estimator=kl_estimator
        )
        self.epsilon = epsilon
