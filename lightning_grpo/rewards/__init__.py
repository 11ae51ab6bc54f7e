"""Reward functions: each scores a rollout batch; the composer sums them with weights.

A reward is a :class:`RewardFunction` subclass or a plain function ``(completions, **kwargs) -> list[float]``
(:class:`FunctionReward`; docs/rewards.md).
"""

from lightning_grpo.rewards.base import CorrectnessReward, RewardBatch, RewardComposer, RewardError, RewardFunction
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rewards.extraction import extract_answer
from lightning_grpo.rewards.format import FormatReward
from lightning_grpo.rewards.function import FunctionReward, reward_function
from lightning_grpo.rewards.length import AGPOLengthReward, OverlongPenalty
from lightning_grpo.rewards.math import MathReward
from lightning_grpo.rewards.verifier import VerifyPolicy, verify

__all__ = [
    "AGPOLengthReward",
    "CorrectnessReward",
    "ExactInteger",
    "FormatReward",
    "FunctionReward",
    "MathReward",
    "OverlongPenalty",
    "RewardBatch",
    "RewardComposer",
    "RewardError",
    "RewardFunction",
    "VerifyPolicy",
    "extract_answer",
    "reward_function",
    "verify",
]
