"""DAPO — Decoupled Clip and Dynamic sAmpling Policy Optimization (Yu et al., arXiv 2503.14476).

The loss is GRPO's clipped surrogate with two changes (ALGORITHMS.md §7):

    L_t = −min(ρ Â, clip(ρ, 1 − ε_low, 1 + ε_high) Â),   aggregated with ``token_mean``:
    loss = Σ_{i,t} M L_t / N_tokens   (N over the whole rollout batch on all ranks)

- clip-higher: ε_high = 0.28 > ε_low = 0.2, so low-probability tokens can grow;
- token-level mean instead of GRPO's per-sequence mean, so long completions weigh in proportion
  to their length;
- no KL term (β = 0, no reference model). ``beta`` is kept for ablations.

DAPO's other two parts are not in the loss and live elsewhere: dynamic sampling (drop groups whose
correctness is all 0 or all 1 and sample more prompts) is the data module's, overlong reward
shaping (soft length penalty in the cache zone) is a reward function, and overlong filtering is
the module's ``mask_truncated`` option. The advantage is the group z-score.

Defaults: ε_low = 0.2, ε_high = 0.28, β = 0, ``token_mean``. Metrics as :class:`GRPO`.
"""

from __future__ import annotations

from lightning_grpo.objectives.base import Aggregation, KLEstimator
from lightning_grpo.objectives.grpo import GRPO


class DAPO(GRPO):
    def __init__(
        self,
        epsilon_low: float = 0.2,
        epsilon_high: float = 0.28,
        beta: float = 0.0,
        aggregation: Aggregation = "token_mean",
        dual_clip: float | None = None,
        kl_estimator: KLEstimator = "k3",
        kl_ratio_weighted: bool = False,
    ) -> None:
        """
        Args:
            epsilon_low: lower clip range, ρ ≥ 1 − epsilon_low.
            epsilon_high: upper clip range, ρ ≤ 1 + epsilon_high (clip-higher).
            beta: KL coefficient; DAPO drops the KL term (0).
            aggregation: ``token_mean`` (DAPO's token-level loss); others for ablations.
            dual_clip: dual-clip constant c > 1 for Â < 0, None = off.
            kl_estimator: k1, k2 or k3 (only used when beta > 0).
            kl_ratio_weighted: weight kl_t by stopgrad(ρ) (TRL's default), not the paper's form.
        """
        super().__init__(
            epsilon_low=epsilon_low,
            epsilon_high=epsilon_high,
            beta=beta,
            aggregation=aggregation,
            dual_clip=dual_clip,
            kl_estimator=kl_estimator,
            kl_ratio_weighted=kl_ratio_weighted,
        )
