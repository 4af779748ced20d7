"""The one error hierarchy of bulkhead.swu: each error says what is wrong and what to do."""

from __future__ import annotations

__all__ = ["SwuError"]


class SwuError(Exception):
    """A .swu image that cannot be accepted: malformed, unsigned, untrusted or inconsistent."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
