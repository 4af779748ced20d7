"""The error hierarchy of bulkhead.osbuild: every failure says what went wrong and what to do."""

from __future__ import annotations

__all__ = ["BuildError", "OsBuildError", "PublishError", "ToolMissing"]


class OsBuildError(Exception):
    """Base of osbuild errors; `hint` tells the user what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ToolMissing(OsBuildError):
    """A program the build needs is not installed."""


class BuildError(OsBuildError):
    """A build step failed."""


class PublishError(OsBuildError):
    """The server refused or could not take a release, an SBOM or a rollout."""
