"""GRPO-family objectives: each maps per-token log-probs, advantages and masks to a loss."""

from lightning_grpo.objectives.abc_grpo import ABCGRPO
from lightning_grpo.objectives.base import EntropyBonus, Normalizers, Objective, ObjectiveInputs, aggregate, kl_penalty
from lightning_grpo.objectives.cispo import CISPO
from lightning_grpo.objectives.dapo import DAPO
from lightning_grpo.objectives.dr_grpo import DrGRPO
from lightning_grpo.objectives.gmpo import GMPO
from lightning_grpo.objectives.grpo import GRPO
from lightning_grpo.objectives.gspo import GSPO
from lightning_grpo.objectives.gtpo import GTPO, conflict_tokens
from lightning_grpo.objectives.rgra import RGRA

__all__ = [
    "ABCGRPO",
    "CISPO",
    "DAPO",
    "GMPO",
    "GRPO",
    "GSPO",
    "GTPO",
    "RGRA",
    "DrGRPO",
    "EntropyBonus",
    "Normalizers",
    "Objective",
    "ObjectiveInputs",
    "aggregate",
    "conflict_tokens",
    "kl_penalty",
]
