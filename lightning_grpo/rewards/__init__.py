"""Reward functions: each scores a rollout batch; the composer sums them with weights."""

from lightning_grpo.rewards.base import CorrectnessReward, RewardBatch, RewardComposer, RewardError, RewardFunction
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rewards.extraction import extract_answer
from lightning_grpo.rewards.format import FormatReward
from lightning_grpo.rewards.length import AGPOLengthReward, OverlongPenalty
from lightning_grpo.rewards.math import MathReward
from lightning_grpo.rewards.verifier import VerifyPolicy, verify

__all__ = [
    "AGPOLengthReward",
    "CorrectnessReward",
    "ExactInteger",
    "FormatReward",
    "MathReward",
    "OverlongPenalty",
    "RewardBatch",
    "RewardComposer",
    "RewardError",
    "RewardFunction",
    "VerifyPolicy",
    "extract_answer",
    "verify",
]
