"""Inventory: what runs on the device (RAUC slots, os-release, containers, packages, agent version)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bulkhead import __version__

__all__ = ["build", "digest", "installed_packages", "parse_os_release", "read_os_release", "root_filesystem"]


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


def root_filesystem(mountinfo: Path = Path("/proc/self/mountinfo"), machine_id: Path = Path("/etc/machine-id")) -> dict[str, Any]:
    """How the root file system is mounted: read-only or not, which of /etc and /var are overlays (an image-based
    device keeps its slot read-only and writes /etc and /var changes to its data partition), and systemd's machine id
    (written to /etc at the first boot: it stays through updates and rollbacks while /etc's changes do, and a factory
    reset, which erases them, makes a new one)."""
    mounts: dict[str, tuple[str, str]] = {}
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:  # ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
        fields = line.split()
        if "-" not in fields or len(fields) < 6:
            continue
        fstype = fields[fields.index("-") + 1] if fields.index("-") + 1 < len(fields) else ""
        mounts[fields[4]] = (fields[5], fstype)  # the last mount on a point is the one seen
    if "/" not in mounts:
        return {}
    try:
        mid = machine_id.read_text().strip()
    except OSError:
        mid = ""
    return {
        "read_only": "ro" in mounts["/"][0].split(","),
        "overlays": sorted(p for p in ("/etc", "/var") if mounts.get(p, ("", ""))[1] == "overlay"),
        "machine_id": mid if re.fullmatch(r"[0-9a-f]{32}", mid) else None,
    }


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
    root: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "agent_version": __version__,
        "os_version": os_version,
        "rauc": rauc,
        "os_release": os_release,
        "root": root or {},
        "containers": containers,
        "packages": packages,
    }


def digest(inventory: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inventory, sort_keys=True).encode()).hexdigest()
