"""`bulkhead device show` for people: a device's summary (OS, slots, apps, packages counted), and its package list."""

from __future__ import annotations

import fnmatch
from typing import Any

from . import output

__all__ = ["packages", "render", "summary"]


def _slots(rauc: Any) -> str:
    if not isinstance(rauc, dict):
        return ""
    if rauc.get("error"):
        return f"(RAUC: {rauc['error']})"
    booted, primary = rauc.get("booted"), rauc.get("primary")
    parts = []
    for name, s in sorted((rauc.get("slots") or {}).items()):
        boot = s.get("bootname")
        if not boot:
            continue
        marks = [m for m, on in (("booted", boot == booted), ("primary", boot == primary)) if on]
        marks += [x for x in (s.get("boot_status"), s.get("version")) if x]
        parts.append(f"{boot} {name} ({', '.join(marks)})" if marks else f"{boot} {name}")
    return "; ".join(parts)


def _apps(containers: Any) -> str:
    if not isinstance(containers, list) or not containers:
        return "none"
    out = []
    for c in containers:
        if c.get("error"):
            out.append(f"(Podman: {c['error']})")
        else:
            app = f"{c.get('app')} {c.get('version')}" if c.get("app") else c.get("name", "?")
            out.append(f"{app} ({c.get('state', '?')})")
    return ", ".join(out)


def _packages_line(pkgs: Any) -> str:
    if not isinstance(pkgs, dict) or not pkgs.get("format"):
        return "not reported"
    count = pkgs.get("count", len(pkgs.get("packages") or {}))
    return f"{count} ({pkgs['format']}; list them with --packages [--grep PATTERN])"


def summary(device: dict[str, Any]) -> dict[str, Any]:
    """The fields a person reads first, each one line (packages counted, not listed)."""
    rep = device.get("reported") or {}
    up = device.get("update") or {}
    desired = device.get("desired") or {}
    rows: dict[str, Any] = {
        "name": device.get("name"),
        "id": device.get("id"),
        "status": device.get("status"),
        "compatible": device.get("compatible"),
        "groups": ", ".join(device.get("groups") or []) or "none",
        "tags": ", ".join(device.get("tags") or []) or "none",
        "os version": rep.get("os_version") or "not reported",
        "slots": _slots(rep.get("rauc")),
        "update": " ".join(str(x) for x in (up.get("phase"), up.get("version")) if x) or "none",
        "desired release": device.get("desired_release_id") or "from its groups",
        "desired apps": ", ".join(f"{k}={v}" for k, v in (desired.get("apps") or {}).items()) or "none",
        "apps running": _apps(rep.get("containers")),
        "packages": _packages_line(rep.get("packages")),
        "agent": rep.get("agent_version") or "",
        "bytes served": f"{device.get('bytes_served') or 0:,}",
        "last seen": output.relative_time(device["last_seen"]) if device.get("last_seen") else "never",
    }
    if device.get("attributes"):
        rows["attributes"] = ", ".join(f"{k}={v}" for k, v in device["attributes"].items())
    if device.get("security_events"):  # `bulkhead device security-log NAME` lists them
        rows["security events"] = ", ".join(f"{k}={n}" for k, n in sorted(device["security_events"].items()))
    return rows


def packages(device: dict[str, Any], grep: str | None = None) -> dict[str, str]:
    """The device's reported packages (name -> version); `grep` keeps names matching a glob or containing it."""
    pkgs = ((device.get("reported") or {}).get("packages") or {}).get("packages") or {}
    if grep:
        pattern = grep if any(ch in grep for ch in "*?[") else f"*{grep}*"
        pkgs = {k: v for k, v in pkgs.items() if fnmatch.fnmatchcase(k, pattern)}
    return dict(sorted(pkgs.items()))


def render(device: dict[str, Any], as_json: bool, list_packages: bool, grep: str | None) -> None:
    """JSON: the whole device (or its packages); tables: the summary (or the packages)."""
    if list_packages or grep:
        pkgs = packages(device, grep)
        if as_json:
            output.emit_json(pkgs)
        else:
            title = f"{device.get('name')}: {len(pkgs)} packages" + (f" matching '{grep}'" if grep else "")
            output.table([{"package": k, "version": v} for k, v in pkgs.items()], ["package", "version"], title)
    elif as_json:
        output.emit_json(device)
    else:
        output.record(summary(device), title=f"device {device.get('name')}")
