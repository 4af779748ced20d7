"""The errors of vulnerability feeds: a document in the wrong format, a fetch or import that failed."""

from __future__ import annotations

from .errors import CraError

__all__ = ["FeedError", "FeedFormatError"]


class FeedFormatError(CraError):
    """A feed document is not in the format its parser reads (the message says where and what was expected)."""


class FeedError(CraError):
    """A feed could not be fetched or imported; the last good copy is kept (the message says why and what to do)."""
