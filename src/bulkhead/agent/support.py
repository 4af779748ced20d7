"""The device's support period as its user may see it (CRA): the server's word, kept in a local status file.

The server's desired state carries `support` (the product, its manufacturer, the last day of support) when the
device's product is registered; the agent writes it to `support-status.json` in its data directory (atomically, only
when it changed) and `bulkhead-agent status` prints it with the days left. Nothing else is derived here.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from .errors import BadResponse
from .state import write_atomic

__all__ = ["FILE_NAME", "check_support", "describe", "read_status", "write_status"]

FILE_NAME = "support-status.json"
_KEYS = ("product", "manufacturer", "support_end")


def check_support(value: Any) -> None:
    """Check the state document's `support` (absent, null, or an object of strings; support_end an ISO date)."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise BadResponse("support must be an object")
    for key in ("product", "manufacturer"):
        if not isinstance(value.get(key), str):
            raise BadResponse(f"support.{key} must be a string")
    end = value.get("support_end")
    if end is not None:
        if not isinstance(end, str):
            raise BadResponse("support.support_end must be a date string or null")
        try:
            dt.date.fromisoformat(end)
        except ValueError:
            raise BadResponse(f"support.support_end {end!r} is not a date such as 2031-12-31") from None


def write_status(path: Path, doc: dict[str, Any]) -> bool:
    """Keep what the state document says about support (or that it says nothing); True when the file changed."""
    support = doc.get("support")
    status = {k: support.get(k) for k in _KEYS} if isinstance(support, dict) else None
    data = (json.dumps({"support": status}, sort_keys=True) + "\n").encode()
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_atomic(path, data, 0o644)  # for the device's user interface to read
    return True


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    support = doc.get("support") if isinstance(doc, dict) else None
    return support if isinstance(support, dict) else None


def describe(support: dict[str, Any], today: dt.date) -> dict[str, Any]:
    """The kept status with the days left until the support end (negative once it has passed)."""
    out = dict(support)
    end = support.get("support_end")
    if isinstance(end, str):
        try:
            left = (dt.date.fromisoformat(end) - today).days
        except ValueError:
            return out
        out["days_left"] = left
        out["ended"] = left < 0
    return out
