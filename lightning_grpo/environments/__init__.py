"""Tools a model can call during an episode, and what a call returns."""

from lightning_grpo.environments.calculator import Calculator
from lightning_grpo.environments.sandbox import PythonSandbox
from lightning_grpo.environments.tool_result import ERROR_KINDS, ToolResult

__all__ = ["Calculator", "ERROR_KINDS", "PythonSandbox", "ToolResult"]
