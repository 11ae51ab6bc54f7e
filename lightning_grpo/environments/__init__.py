"""Environments: what happens after each model turn (single-turn, or tool use over several turns), and the
tools a model can call during an episode."""

from lightning_grpo.environments.base import Environment, EnvReply, Problem
from lightning_grpo.environments.calculator import Calculator
from lightning_grpo.environments.sandbox import PythonSandbox
from lightning_grpo.environments.single_turn import SingleTurn
from lightning_grpo.environments.tool import Tool
from lightning_grpo.environments.tool_result import ERROR_KINDS, ToolResult
from lightning_grpo.environments.tool_use import ToolEnvironment

__all__ = [
    "Calculator",
    "ERROR_KINDS",
    "EnvReply",
    "Environment",
    "Problem",
    "PythonSandbox",
    "SingleTurn",
    "Tool",
    "ToolEnvironment",
    "ToolResult",
]
