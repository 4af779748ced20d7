"""Desired Debian packages with apt: the overlay's source, pin and credentials written, then install, hold or remove.

The files (under a configurable root, so tests and image builds can aim elsewhere):
`etc/apt/sources.list.d/bulkhead.sources` (deb822, Signed-By the key file written beside it),
`etc/apt/preferences.d/bulkhead` (the overlay pinned above the distribution, so its versions win) and
`etc/apt/auth.conf.d/bulkhead.conf` (mode 600: the device's name and credential). apt itself takes its lock
(`DPkg::Lock::Timeout` waits for another apt); a dpkg run cut short (power cut) is finished first with
`dpkg --configure -a`. On failure the result carries apt's own message.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .state import write_atomic

__all__ = ["Apt", "PackageResult", "overlay_files"]

log = logging.getLogger(__name__)

SOURCES = "etc/apt/sources.list.d/bulkhead.sources"
PREFERENCES = "etc/apt/preferences.d/bulkhead"
AUTH = "etc/apt/auth.conf.d/bulkhead.conf"
KEY = "etc/apt/keyrings/bulkhead-overlay.asc"
PIN_PRIORITY = 990  # above a distribution's 500, below 1000 (which would downgrade packages the overlay does not pin)
_TIMEOUT = 1800


@dataclass(frozen=True)
class PackageResult:
    ok: bool
    error: str | None = None  # apt's (or dpkg's) own message
    installed: dict[str, str] = field(default_factory=dict)  # name → version after the run, of the desired packages


def overlay_files(
    root: Path, url: str, suite: str, components: Sequence[str], key: str, login: str, credential: str
) -> dict[Path, tuple[bytes, int]]:
    """The files that point apt at the overlay: path → (content, mode)."""
    host = url.split("://", 1)[-1].rstrip("/")
    origin = host.split("/", 1)[0].rsplit(":", 1)[0]
    # apt sends credentials over plain http only to a machine written with its scheme (https needs none)
    machine = host if url.startswith("https://") else f"http://{host}"
    return {
        root / KEY: (key.encode(), 0o644),
        root / SOURCES: (
            f"Types: deb\nURIs: {url}\nSuites: {suite}\nComponents: {' '.join(components)}\nSigned-By: {root / KEY}\n".encode(),
            0o644,
        ),
        root / PREFERENCES: (
            f"# written by the Bulkhead agent: the overlay's packages win over the distribution's\n"
            f"Package: *\nPin: origin {origin}\nPin-Priority: {PIN_PRIORITY}\n".encode(),
            0o644,
        ),
        root / AUTH: (f"machine {machine}\nlogin {login}\npassword {credential}\n".encode(), 0o600),
    }


READ_ONLY = (
    "the root file system is read-only (an image-based device: its OS comes in releases RAUC installs), so apt "
    "cannot install or remove packages here: build them into the OS release (bulkhead image build --packages NAME) "
    "and roll it out"
)


def read_only(path: Path) -> bool:
    """Whether the file system holding `path` is mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class Apt:
    """apt-get and dpkg on the device (or on a root that `env`'s APT_CONFIG points apt at)."""

    def __init__(self, root: Path = Path("/"), env: Mapping[str, str] | None = None, dpkg_admin: Path | None = None) -> None:
        self.root = root
        self.env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C", **(env or {})}
        self.dpkg_admin = dpkg_admin or root / "var/lib/dpkg"

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        log.info("packages: %s", " ".join(args))
        try:
            return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return subprocess.CompletedProcess(args, 127, "", f"{args[0]} could not run: {e}")

    def write_overlay(self, files: Mapping[Path, tuple[bytes, int]]) -> bool:
        """Write the files that differ; True when any changed (apt's lists are then out of date)."""
        changed = False
        for path, (data, mode) in files.items():
            try:
                same = path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode
            except OSError:
                same = False
            if not same:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, data, mode)
                changed = True
        return changed

    def interrupted(self) -> bool:
        """dpkg was cut short (its journal under updates/ is not empty): `dpkg --configure -a` must run first."""
        updates = self.dpkg_admin / "updates"
        try:
            return any(p.name.isdigit() for p in updates.iterdir())
        except OSError:
            return False

    @staticmethod
    def _message(r: subprocess.CompletedProcess[str]) -> str:
        lines = [ln for ln in (r.stderr or "").splitlines() if ln.startswith(("E:", "W:", "dpkg:"))]
        text = "\n".join(lines) or (r.stderr or r.stdout or "").strip()
        args = list(r.args)  # the program and its command ("apt-get install"), not the options before it
        words = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "-o")]
        return f"{' '.join(words[:2])} failed (exit {r.returncode}): {text[-2000:]}"

    def installed(self, names: Sequence[str]) -> dict[str, str]:
        return {name: version for name, (version, _held) in self._status(names).items()}

    def _status(self, names: Sequence[str]) -> dict[str, tuple[str, bool]]:
        """Installed packages among `names`: their version and whether they are held (dpkg's selection)."""
        if not names:
            return {}
        r = self._run(["dpkg-query", f"--admindir={self.dpkg_admin}", "-W", "-f", "${Package}\t${Version}\t${Status}\n", *names])
        out = {}
        for line in r.stdout.splitlines():
            name, version, status = [*line.split("\t"), "", ""][:3]
            if status.endswith(" installed"):
                out[name] = (version, status.startswith("hold "))
        return out

    def converged(self, packages: Sequence[Mapping[str, Any]]) -> bool:
        """dpkg has every package as asked: removed, or installed (at the version, when one is asked) and held or
        not as asked. After an OS update the new slot's dpkg says otherwise, and the packages are applied again."""
        now = self._status([p["name"] for p in packages])
        for p in packages:
            have = now.get(p["name"])
            if p.get("remove"):
                if have is not None:
                    return False
            elif have is None or (p.get("version") and have[0] != p["version"]) or bool(p.get("hold")) != have[1]:
                return False
        return True

    def apply(self, packages: Sequence[Mapping[str, Any]], update: bool = True) -> PackageResult:
        """Converge to `packages` (name, version or None, hold, remove); stops at the first failing step. Nothing
        runs but one dpkg-query when dpkg already has them as asked (the agent calls this on every pass: no
        `apt-get update` against the overlay every poll interval)."""
        lock = ["-o", "DPkg::Lock::Timeout=300"]
        if self.interrupted():
            r = self._run(["dpkg", f"--root={self.root}", "--configure", "-a"])
            if r.returncode != 0:
                return PackageResult(False, self._message(r))
        elif self.converged(packages):
            return PackageResult(True, None, self.installed([p["name"] for p in packages]))
        if read_only(self.root / "usr"):  # dpkg would get halfway, its database (on a writable /var) half-written
            return PackageResult(False, READ_ONLY)
        if update:
            r = self._run(["apt-get", *lock, "update"])
            if r.returncode != 0 or "\nE: " in "\n" + r.stderr or "\nW: GPG error" in "\n" + r.stderr:
                return PackageResult(False, self._message(r))
        names = [p["name"] for p in packages]
        now = self.installed(names)
        wanted = [
            f"{p['name']}={p['version']}" if p.get("version") else p["name"]
            for p in packages
            if not p.get("remove") and (not p.get("version") or now.get(p["name"]) != p["version"])
        ]
        removed = [p["name"] for p in packages if p.get("remove") and p["name"] in now]
        holds = [p["name"] for p in packages if p.get("hold") and not p.get("remove")]
        unholds = [p["name"] for p in packages if not p.get("hold") and p["name"] in now]
        if unholds:
            self._run(["apt-mark", "unhold", *unholds])
        steps: list[list[str]] = []
        if wanted:
            steps.append(["apt-get", *lock, "install", "-y", "--allow-downgrades", "--allow-change-held-packages", *wanted])
        if removed:
            steps.append(["apt-get", *lock, "remove", "-y", "--allow-change-held-packages", *removed])
        for args in steps:
            r = self._run(args)
            if r.returncode != 0:
                return PackageResult(False, self._message(r), self.installed(names))
        if holds:
            r = self._run(["apt-mark", "hold", *holds])
            if r.returncode != 0:
                return PackageResult(False, self._message(r), self.installed(names))
        return PackageResult(True, None, self.installed(names))
