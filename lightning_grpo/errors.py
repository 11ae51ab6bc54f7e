"""The one base class for bad user input: a configuration value or a data file the project refuses.

``lightning-grpo`` prints a :class:`ConfigurationError` as one line, ``error: <message>``, and exits with
status 1, without a traceback: the message names the bad value (and the file, for files), so the
traceback would only bury it. Any other exception is a bug and keeps its traceback. It subclasses
``ValueError``, so code that catches ``ValueError`` still catches it.
"""

from __future__ import annotations

from typing import Any


class ConfigurationError(ValueError):
    """A value the user gave (an option, a config file, a row of a data file) cannot be used; the message
    names the value, where it came from, and what is allowed."""


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (ending in "...")."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def configuration_error_in(error: BaseException) -> ConfigurationError | None:
    """``error`` itself or the first :class:`ConfigurationError` it was raised from (jsonargparse re-raises an
    error of a class it builds, e.g. a bad reward in ``data.rollout``, as its own ``ValueError``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ConfigurationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
