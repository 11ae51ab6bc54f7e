"""DAPO — Decoupled Clip and Dynamic sAmpling Policy Optimization (Yu et al., arXiv 2503.14476).

The loss is GRPO's clipped surrogate with two changes (docs/algorithms.md §7):

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

Defaults: ε_low = 0.2, ε_high = 0.28, β = 0, ``token_mean``. Options and metrics as :class:`GRPO`.

Reproduces exactly (tests/reference): TRL 1.16 ``loss_type="dapo"`` with ``epsilon=0.2,
epsilon_high=0.28`` (TRL's default loss type; its normaliser is the generation batch's token count,
our N_tokens); verl 0.9.1 ``loss_mode="vanilla"``, ``loss_agg_mode="token-mean"``,
``clip_ratio_low=0.2``, ``clip_ratio_high=0.28`` with ``dual_clip=clip_ratio_c``.
"""

from __future__ import annotations

from typing import Any

from lightning_grpo.objectives.base import Aggregation
from lightning_grpo.objectives.grpo import GRPO


class DAPO(GRPO):
    def __init__(
        self,
        epsilon_high: float = 0.28,
        *,
        beta: float = 0.0,
        aggregation: Aggregation = "token_mean",
        **options: Any,
    ) -> None:
        """
        Args:
            epsilon_high: upper clip range, ρ ≤ 1 + epsilon_high (clip-higher; epsilon_low stays 0.2).
            beta: KL coefficient; DAPO drops the KL term (0).
            aggregation: ``token_mean`` (DAPO's token-level loss); others for ablations.
            options: :class:`GRPO`'s (epsilon_low, dual_clip) and the shared ones of :class:`Objective`.
        """
        super().__init__(epsilon_high=epsilon_high, beta=beta, aggregation=aggregation, **options)
