"""Device inventory (the agent's package report) → components."""

from __future__ import annotations

import pytest

from bulkhead.agent.inventory import parse_os_release
from bulkhead.cra.components import read_inventory
from bulkhead.cra.errors import InventoryError
from bulkhead.cra.model import ComponentOrigin

DEBIAN = parse_os_release('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n')
POKY = parse_os_release('ID=poky\nVERSION_ID="5.0.7"\nVERSION_CODENAME="scarthgap"\n')


def test_dpkg_inventory() -> None:
    report = {
        "format": "dpkg",
        "count": 2,
        "packages": {"libssl3": "3.0.15-1~deb12u1", "linux-image-6.1.0-28-amd64": "6.1.119-1"},
    }
    comps = {c.name: c for c in read_inventory(report, DEBIAN)}
    ssl = comps["libssl3"]
    assert (ssl.origin, ssl.distro, ssl.distro_release) == (ComponentOrigin.INVENTORY, "debian", "bookworm")
    assert ssl.purl == "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?distro=debian-12"
    assert comps["linux-image-6.1.0-28-amd64"].is_kernel and not ssl.is_kernel


def test_opkg_inventory() -> None:
    report = {
        "format": "opkg",
        "count": 1,
        "packages": {"busybox": "1.36.1-r0", "kernel-image-bzimage-6.6.21-yocto-standard": "6.6.21+git0-r0"},
    }
    comps = {c.name: c for c in read_inventory(report, POKY)}
    assert (comps["busybox"].purl, comps["busybox"].distro, comps["busybox"].distro_release) == (None, "poky", "scarthgap")
    assert comps["kernel-image-bzimage-6.6.21-yocto-standard"].is_kernel


def test_bad_inventory_is_refused() -> None:
    with pytest.raises(InventoryError, match="expected"):
        read_inventory({"format": "rpm", "packages": {}})
    with pytest.raises(InventoryError, match="version string"):
        read_inventory({"format": "dpkg", "packages": {"x": 1}})
