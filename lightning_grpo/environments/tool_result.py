"""What a tool call gives back: :class:`ToolResult`."""

from __future__ import annotations

from dataclasses import dataclass

ERROR_KINDS = ("timeout", "cpu", "memory", "output_limit", "crashed", "syntax", "forbidden", "disabled", "error")


@dataclass(frozen=True)
class ToolResult:
    """One tool call's outcome.

    ``text``: what goes back to the model, the tool's output or a one-line error message.
    ``error``: None when the call ran fine, else one of :data:`ERROR_KINDS` (a short kind for counting in
    the logs). ``seconds``: the call's wall time.
    """

    text: str
    error: str | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.error is not None and self.error not in ERROR_KINDS:
            raise ValueError(f"error must be None or one of {ERROR_KINDS}, got {self.error!r}")
