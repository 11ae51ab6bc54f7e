"""Environments: what happens after each model turn (single-turn, or tool use over several turns)."""

from lightning_grpo.environments.base import Environment, EnvReply, Problem
from lightning_grpo.environments.single_turn import SingleTurn
from lightning_grpo.environments.tool import Tool
from lightning_grpo.environments.tool_result import ToolResult
from lightning_grpo.environments.tool_use import ToolEnvironment

__all__ = ["EnvReply", "Environment", "Problem", "SingleTurn", "Tool", "ToolEnvironment", "ToolResult"]
