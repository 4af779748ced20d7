#!/usr/bin/env python3
"""Vendor browser assets from pinned npm packages: `npm pack`, check the registry's sha512, copy, write the lock.

    python3 scripts/vendor_assets.py            # fetch every package in PINS again and rewrite the locks

The web UI never loads anything from a CDN (it must work on a factory network without the Internet): the
files are copied into the server package, and each lock names the package, version, the tarball's sha512
integrity as the npm registry publishes it, and each copied file's sha512 (tests/server/test_ui_assets.py
checks the copies against it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UI_VENDOR = ROOT / "src/bulkhead/server/ui/static/vendor"
TEST_VENDOR = ROOT / "tests/data/vendor"

# (package, version, file inside the tarball, destination directory)
PINS = [
    ("htmx.org", "2.0.11", "package/dist/htmx.min.js", UI_VENDOR),
    # The web terminal of remote sessions (ui/pages_remote.py, static/terminal.js)
    ("@xterm/xterm", "6.0.0", "package/lib/xterm.js", UI_VENDOR),
    ("@xterm/xterm", "6.0.0", "package/css/xterm.css", UI_VENDOR),
    ("@xterm/addon-fit", "0.11.0", "package/lib/addon-fit.js", UI_VENDOR),
    ("axe-core", "4.11.1", "package/axe.min.js", TEST_VENDOR),
]


def sha512_sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def vendor(package: str, version: str, member: str, dest: Path, work: Path) -> dict[str, str]:
    out = subprocess.run(
        ["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", str(work)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)[0]
    tarball = work / info["filename"]
    if sha512_sri(tarball.read_bytes()) != info["integrity"]:
        sys.exit(f"{package}@{version}: the tarball does not match the registry's integrity {info['integrity']}")
    with tarfile.open(tarball) as tar:
        f = tar.extractfile(member)
        if f is None:
            sys.exit(f"{package}@{version} has no file {member}")
        data = f.read()
    dest.mkdir(parents=True, exist_ok=True)
    name = Path(member).name
    (dest / name).write_bytes(data)
    return {
        "package": package,
        "version": version,
        "integrity": info["integrity"],
        "tarball_member": member,
        "file": name,
        "sha512": sha512_sri(data),
    }


def main() -> None:
    locks: dict[Path, list[dict[str, str]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for package, version, member, dest in PINS:
            locks.setdefault(dest, []).append(vendor(package, version, member, dest, Path(tmp)))
    for dest, entries in locks.items():
        (dest / "vendor.lock.json").write_text(json.dumps(entries, indent=2) + "\n")
        print(f"{dest / 'vendor.lock.json'}: {', '.join(e['package'] + '@' + e['version'] for e in entries)}")


if __name__ == "__main__":
    main()
