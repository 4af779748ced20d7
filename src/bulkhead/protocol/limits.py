"""Limits of the agent protocol that both sides must agree on."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_EVENT_DETAILS_BYTES", "bounded_details"]

MAX_EVENT_DETAILS_BYTES = 16 * 1024  # one report event's `details`, as JSON: the server refuses a batch above it
_MAX_TEXT = 2000


def bounded_details(details: dict[str, Any], limit: int = MAX_EVENT_DETAILS_BYTES) -> dict[str, Any]:
    """`details` cut to fit the server's limit: long strings shortened, and if that is not enough, only the
    scalar fields kept (an event the server refuses would block every report after it)."""
    out = {k: (v[:_MAX_TEXT] + f"... [{len(v) - _MAX_TEXT} more characters]" if isinstance(v, str) and len(v) > _MAX_TEXT else v)
           for k, v in details.items()}  # fmt: skip
    if len(json.dumps(out, default=str)) <= limit:
        return out
    small = {k: v for k, v in out.items() if isinstance(v, str | int | float | bool) or v is None}
    small["truncated"] = True
    while len(json.dumps(small, default=str)) > limit and len(small) > 1:
        small.pop(next(k for k in small if k != "truncated"))
    return small
