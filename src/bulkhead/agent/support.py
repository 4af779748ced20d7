"""The device's support period and pending security update as its user may see them (CRA): the server's word, kept
in a local status file.

The server's desired state carries `support` (the product, its manufacturer, the last day of support) when the
device's product is registered, and `security` (the pending security update: version, when it is due, a postponement,
when it installs) when one is pending; the agent writes them to `support-status.json` in its data directory
(atomically, only when it changed) and `bulkhead-agent status` prints them, the support end with the days left.
Nothing else is derived here.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from .errors import BadResponse
from .state import write_atomic

__all__ = ["FILE_NAME", "check_security", "check_support", "describe", "read_security", "read_status", "write_status"]

FILE_NAME = "support-status.json"
_KEYS = ("product", "manufacturer", "support_end")
_SECURITY_KEYS = ("release_id", "version", "available_at", "due_at", "postponed_until", "installs_at", "mode")


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


def check_security(value: Any) -> None:
    """Check the state document's `security` (absent, null, or the pending security update with its times)."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise BadResponse("security must be an object")
    if not isinstance(value.get("version"), str) or not isinstance(value.get("release_id"), int):
        raise BadResponse("security must name the release_id and version of the pending security update")
    for key in ("available_at", "due_at", "postponed_until", "installs_at"):
        when = value.get(key)
        if when is None and key in ("postponed_until", "installs_at"):
            continue
        if not _is_time(when):
            raise BadResponse(f"security.{key} must be an ISO 8601 time")
    if value.get("mode") not in ("automatic", "opt_out"):
        raise BadResponse("security.mode must be automatic or opt_out")


def _is_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def write_status(path: Path, doc: dict[str, Any]) -> bool:
    """Keep what the state document says about support and a pending security update (or that it says nothing);
    True when the file changed."""
    support = doc.get("support")
    status = {k: support.get(k) for k in _KEYS} if isinstance(support, dict) else None
    kept: dict[str, Any] = {"support": status}
    pending = doc.get("security")
    if isinstance(pending, dict):
        kept["security"] = {k: pending.get(k) for k in _SECURITY_KEYS}
    data = (json.dumps(kept, sort_keys=True) + "\n").encode()
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


def read_security(path: Path) -> dict[str, Any] | None:
    """The pending security update as the server last said it (None: none, or no file)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pending = doc.get("security") if isinstance(doc, dict) else None
    return pending if isinstance(pending, dict) else None


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
