"""A device's reported package inventory (the agent's `packages` and `os_release`) → components.

The agent reports `{"format": "dpkg"|"opkg"|null, "count": n, "packages": {name: version}}` (bulkhead.agent.inventory)
and the device's os-release. dpkg packages get a Debian purl with the release from os-release
(VERSION_CODENAME, else VERSION_ID); opkg packages (Yocto) have no registered purl type and no source name in
the report, so only name and version are known.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from packageurl import PackageURL

from ..errors import InventoryError
from ..model import Component, ComponentOrigin
from ._common import DEBIAN_CODENAMES, is_kernel

__all__ = ["read_inventory"]


def read_inventory(packages: Mapping[str, Any], os_release: Mapping[str, str] | None = None) -> list[Component]:
    """Components of a device from its reported `packages` object and os-release fields."""
    fmt = packages.get("format")
    listed = packages.get("packages", {})
    if fmt not in ("dpkg", "opkg", None) or not isinstance(listed, Mapping):
        raise InventoryError('inventory packages: expected {"format": "dpkg"|"opkg", "packages": {name: version}}')
    release = dict(os_release or {})
    distro = release.get("ID") or None
    codename = release.get("VERSION_CODENAME") or None
    if distro == "debian" and not codename:
        codename = DEBIAN_CODENAMES.get(release.get("VERSION_ID", ""))
    out = []
    for name, version in listed.items():
        if not isinstance(name, str) or not isinstance(version, str) or not name:
            raise InventoryError(f"inventory packages: {name!r} must map a package name to a version string")
        purl = None
        if fmt == "dpkg" and distro == "debian":
            quals = {"distro": f"debian-{release['VERSION_ID']}"} if release.get("VERSION_ID") else {}
            purl = PackageURL(type="deb", namespace="debian", name=name, version=version, qualifiers=quals).to_string()
        out.append(
            Component(
                name=name,
                version=version,
                origin=ComponentOrigin.INVENTORY,
                purl=purl,
                distro=distro,
                distro_release=codename or (release.get("VERSION_ID") if fmt == "opkg" else None),
                is_kernel=is_kernel([name], ()),
            )
        )
    return out
