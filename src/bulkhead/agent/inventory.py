"""Inventory: what runs on the device (RAUC slots, os-release, containers, packages, agent version)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bulkhead import __version__

__all__ = ["build", "digest", "installed_packages", "parse_os_release", "read_os_release"]


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def read_os_release(path: Path) -> dict[str, str]:
    try:
        return parse_os_release(path.read_text())
    except OSError:
        return {}


def installed_packages() -> dict[str, Any]:
    """Installed packages from dpkg or opkg, whichever the device has."""
    for tool, args, fmt in (
        ("dpkg-query", ["-W", "-f", "${Package}\t${Version}\n"], "dpkg"),
        ("opkg", ["list-installed"], "opkg"),
    ):
        if shutil.which(tool) is None:
            continue
        r = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            continue
        sep = "\t" if fmt == "dpkg" else " - "
        pkgs = dict(line.split(sep, 1) for line in r.stdout.splitlines() if sep in line)
        return {"format": fmt, "count": len(pkgs), "packages": dict(sorted(pkgs.items()))}
    return {"format": None, "count": 0, "packages": {}}


def build(
    os_version: str | None,
    rauc: dict[str, Any] | None,
    os_release: dict[str, str],
    containers: list[dict[str, Any]],
    packages: dict[str, Any],
) -> dict[str, Any]:
    return {
        "agent_version": __version__,
        "os_version": os_version,
        "rauc": rauc,
        "os_release": os_release,
        "containers": containers,
        "packages": packages,
    }


def digest(inventory: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inventory, sort_keys=True).encode()).hexdigest()
