"""The server's desired-state document checked at the edge: a malformed one is a BadResponse, never kept on disk.

The agent keeps the last good document and works from it while the server is unreachable, so a document is
checked here, before it replaces the cached one: the rest of the agent may index it without guarding every key.
Unknown keys are allowed (a newer server may send more).
"""

from __future__ import annotations

import base64
from typing import Any

from .errors import BadResponse
from .state import ReleaseRef
from .support import check_security, check_support

__all__ = ["MAX_INTERVAL", "MIN_INTERVAL", "check_state", "poll_interval"]

MIN_INTERVAL, MAX_INTERVAL = 1.0, 86400.0


def _objects(desired: dict[str, Any], key: str, fields: dict[str, type | tuple[type, ...]]) -> None:
    items = desired.get(key)
    if items is None:
        return
    if not isinstance(items, list):
        raise BadResponse(f"desired.{key} must be a list, not {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadResponse(f"desired.{key}[{i}] must be an object")
        for name, kind in fields.items():
            if not isinstance(item.get(name), kind):
                raise BadResponse(f"desired.{key}[{i}].{name} is missing or has the wrong type")
        if key in ("apps", "prefetch"):
            _objects(item, "containers", {"name": str, "image": str})
            if not isinstance(item.get("containers"), list):
                raise BadResponse(f"desired.{key}[{i}].containers must be a list")
            if not isinstance(item.get("action") or {}, dict):
                raise BadResponse(f"desired.{key}[{i}].action must be an object")


def check_state(doc: dict[str, Any]) -> dict[str, Any]:
    """Check the shape of `GET /device/v1/state`'s answer; returns it unchanged."""
    desired = doc.get("desired")
    if not isinstance(desired, dict):
        raise BadResponse("the state document has no 'desired' object")
    release = desired.get("release")
    if release is not None:
        if not isinstance(release, dict):
            raise BadResponse("desired.release must be an object or null")
        try:
            ReleaseRef.from_wire(release)
        except ValueError as e:
            raise BadResponse(str(e)) from None
    _objects(desired, "apps", {"name": str, "version": str})
    _objects(desired, "prefetch", {"name": str, "version": str})
    _objects(desired, "files", {"path": str, "content_b64": str, "sha256": str})
    for i, f in enumerate(desired.get("files") or []):
        if not f["path"].startswith("/") or "/../" in f["path"] + "/" or "\0" in f["path"]:
            raise BadResponse(f"desired.files[{i}].path must be absolute without '..'")
        try:
            base64.b64decode(f["content_b64"], validate=True)
        except ValueError:
            raise BadResponse(f"desired.files[{i}].content_b64 is not base64") from None
        mode = f.get("mode", "0644")
        if not (isinstance(mode, str) and mode.isascii() and mode.isdigit() and all(c in "01234567" for c in mode)):
            raise BadResponse(f"desired.files[{i}].mode must be an octal string such as '0644'")
        if not isinstance(f.get("on_change") or "", str):
            raise BadResponse(f"desired.files[{i}].on_change must be a command string")
    check_support(doc.get("support"))
    check_security(doc.get("security"))
    action = desired.get("packages_action")
    if action is not None and (
        not isinstance(action, dict) or isinstance(action.get("id"), bool) or not isinstance(action.get("id"), int)
    ):
        raise BadResponse("desired.packages_action must be an object with an integer id")
    _objects(desired, "packages", {"name": str})
    if not isinstance(desired.get("registries") or {}, dict):
        raise BadResponse("desired.registries must be an object")
    device = doc.get("device") or {}
    if not isinstance(device, dict) or not isinstance(device.get("attributes") or {}, dict):
        raise BadResponse("device.attributes must be an object")
    interval = doc.get("poll_interval")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float))):
        raise BadResponse("poll_interval must be a number of seconds")
    return doc


def poll_interval(doc: dict[str, Any] | None, default: float = 60.0) -> float:
    """The server's poll interval, bounded to a sane range (a 0 or NaN from a broken server does not spin the agent)."""
    value = (doc or {}).get("poll_interval")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return default
    return min(max(float(value), MIN_INTERVAL), MAX_INTERVAL)
