"""Points in time from API input: ISO 8601 with an offset, normalised to UTC, within a sane range."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import Invalid

__all__ = ["EARLIEST", "LATEST", "parse_time"]

EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def parse_time(raw: Any, what: str) -> dt.datetime:
    """An aware UTC datetime from `raw` (ISO 8601 text or a datetime). A time without an offset is refused:
    '02:00' means a different instant on every device and server, so the caller must say which one."""
    if isinstance(raw, dt.datetime):
        value = raw
    else:
        try:
            value = dt.datetime.fromisoformat(str(raw))
        except ValueError:
            raise Invalid(f"{what} must be an ISO 8601 time, e.g. 2026-12-01T02:00:00+01:00") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"{what} needs a time zone offset (e.g. 2026-12-01T02:00:00+00:00 or ...Z)")
    try:
        value = value.astimezone(dt.UTC)
    except OverflowError:
        value = LATEST  # beyond what UTC can hold: refused below like any other time past the range
    if not EARLIEST <= value < LATEST:
        shown = raw if isinstance(raw, str) else value.isoformat()
        raise Invalid(f"{what} {shown} is outside {EARLIEST.date()} to {LATEST.date()} (UTC); give a time in that range")
    return value
