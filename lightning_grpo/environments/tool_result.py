"""What a tool call returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolResult:
    text: str  # what goes back to the model: the output, or a one-line error message
    error: str | None = None  # None: ran fine; else a short kind: "timeout", "memory", "output_limit", ...
    seconds: float = 0.0  # wall time of the call
