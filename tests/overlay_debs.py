"""Tiny real Debian packages for the overlay tests, built by dpkg-deb."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["make_deb"]


def make_deb(work: Path, name: str, version: str, arch: str = "all", files: dict[str, str | bytes] | None = None) -> Path:
    """A .deb of `name` `version` holding `files` (path → text or bytes); by default one file naming the version."""
    root = work / f"{name}_{version}_{arch}".replace(":", "%3a")
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Bulkhead Tests <tests@example.com>\n"
        f"Section: misc\nPriority: optional\nDescription: overlay test package\n a package made by the tests\n"
    )
    for path, text in (files or {f"usr/share/{name}/version": f"{version}\n"}).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)
    out = work / f"{root.name}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)], check=True, capture_output=True)
    return out
