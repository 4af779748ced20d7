"""Pure shaping of service answers for the templates: a device's reported inventory as plain rows.

A device reports its inventory itself, so nothing in it is trusted to have the shape the agent sends: every value
becomes a string (escaped by the templates) and anything of another shape is skipped.
"""

from __future__ import annotations

from typing import Any

__all__ = ["containers", "packages", "slots"]

MAX_PACKAGES_SHOWN = 500


def _text(value: Any) -> str:
    return "" if value is None else str(value)[:512]


def slots(reported: Any) -> tuple[str, list[dict[str, str]]]:
    """The booted slot and each slot's row (name, bootname, state, boot status, version)."""
    rauc = reported.get("rauc") if isinstance(reported, dict) else None
    if not isinstance(rauc, dict):
        return "", []
    rows = []
    raw = rauc.get("slots")
    for name, info in raw.items() if isinstance(raw, dict) else []:
        info = info if isinstance(info, dict) else {}
        rows.append(
            {
                "name": _text(name),
                "bootname": _text(info.get("bootname")),
                "state": _text(info.get("state")),
                "boot_status": _text(info.get("boot_status")),
                "version": _text(info.get("version")),
            }
        )
    return _text(rauc.get("booted")), rows


def containers(reported: Any) -> list[dict[str, str]]:
    raw = reported.get("containers") if isinstance(reported, dict) else None
    out = []
    for c in raw if isinstance(raw, list) else []:
        if isinstance(c, dict):
            out.append({k: _text(c.get(k)) for k in ("name", "image", "state", "app")})
    return out


def packages(reported: Any, query: str = "") -> tuple[int, list[tuple[str, str]]]:
    """How many packages match `query` (a substring of the name, any case) and the first of them, by name."""
    raw = reported.get("packages") if isinstance(reported, dict) else None
    pkgs = raw.get("packages") if isinstance(raw, dict) else None
    if not isinstance(pkgs, dict):
        return 0, []
    q = query.strip().lower()
    hits = sorted((_text(k), _text(v)) for k, v in pkgs.items() if not q or q in str(k).lower())
    return len(hits), hits[:MAX_PACKAGES_SHOWN]
