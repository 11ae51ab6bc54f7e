"""The tool interface the tool environment calls: text in, a :class:`ToolResult` out."""

from __future__ import annotations

from abc import ABC, abstractmethod

from lightning_grpo.environments.tool_result import ToolResult


class Tool(ABC):
    """A named tool. ``run_many`` may run calls in parallel; results come back in order."""

    name: str = "tool"
    description: str = ""
    argument: str = "input"  # the argument's name in a JSON tool call (``{"name": ..., "arguments": {argument: ...}}``)

    @abstractmethod
    def run(self, source: str) -> ToolResult:
        """Run one call; never raises for bad input (the error goes back to the model as text)."""

    def run_many(self, sources: list[str]) -> list[ToolResult]:
        return [self.run(s) for s in sources]

    def close(self) -> None:
        """Release workers, if any."""

    def schema(self) -> dict:
        """The tool as a chat template's ``tools`` entry (JSON schema of a function with one string argument)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {self.argument: {"type": "string"}},
                    "required": [self.argument],
                },
            },
        }
