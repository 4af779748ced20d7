"""An apt root of its own for a simulated device: apt's directories, an empty dpkg database and an APT_CONFIG that
keeps apt and dpkg inside it (never this machine's packages), run as root without apt's sandbox user."""

from __future__ import annotations

from pathlib import Path

__all__ = ["make_apt_root"]

_DIRS = (
    "etc/apt/sources.list.d", "etc/apt/auth.conf.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d", "etc/apt/keyrings",
    "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt",
    "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers",
)  # fmt: skip


def make_apt_root(root: Path) -> Path:
    """Create (or keep) the root's directories and dpkg database; returns its APT_CONFIG file."""
    for d in _DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in ("var/lib/dpkg/status", "var/lib/dpkg/available"):
        (root / f).touch()
    settings = {
        "Dir::Etc": root / "etc/apt",
        "Dir::State": root / "var/lib/apt",
        "Dir::Cache": root / "var/cache/apt",
        "Dir::State::status": root / "var/lib/dpkg/status",
        "Dir::Log": root / "var/log/apt",
        "Debug::NoLocking": "1",
        "APT::Sandbox::User": "root",
        "Acquire::Languages": "none",
        "Acquire::http::Proxy": "DIRECT",
    }
    conf = root / "apt.conf"
    conf.write_text(
        "".join(f'{k} "{v}";\n' for k, v in settings.items())
        + f'DPkg::Options {{ "--root={root}"; "--force-not-root"; }};\n'  # dpkg never touches this machine's packages
    )
    return conf
