"""The errors of vulnerability feeds: a document in the wrong format, a fetch or import that failed."""

from __future__ import annotations

from .errors import CraError

__all__ = ["FeedError", "FeedFormatError", "FeedHttpError"]


class FeedFormatError(CraError):
    """A feed document is not in the format its parser reads (the message says where and what was expected)."""


class FeedError(CraError):
    """A feed could not be fetched or imported; the last good copy is kept (the message says why and what to do)."""


class FeedHttpError(FeedError):
    """The feed's server answered with an HTTP error status (``status``: 404 says the file is not published)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
