"""Errors of bulkhead.delta: each says what was wrong and, where it helps, what to do."""

from __future__ import annotations


class DeltaError(Exception):
    """A delta could not be made or applied."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
