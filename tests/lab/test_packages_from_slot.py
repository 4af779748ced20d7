"""A lab device with `packages_from_slot` reports the dpkg packages of the slot it boots (no root needed here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bulkhead.agent.inventory import installed_packages
from bulkhead.lab import images
from bulkhead.lab.device import DeviceSpec, LabDevice
from bulkhead.lab.pki import make_pki

STATUS = """Package: libssl3
Status: install ok installed
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Source: openssl
Version: 3.0.11-1~deb12u2
Description: Secure Sockets Layer toolkit - shared libraries

Package: rauc
Status: install ok installed
Maintainer: Debian Maintainers <debian-devel@lists.debian.org>
Architecture: amd64
Version: 1.8-2
Description: controller for safe and secure updating of embedded Linux systems
"""


def test_the_agent_lists_the_booted_slots_dpkg_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for tool in ("mkfs.ext4", "debugfs", "dpkg-query"):
        if shutil.which(tool) is None:
            pytest.skip(f"'{tool}' is missing: install the Debian packages e2fsprogs and dpkg")
    pki = make_pki(tmp_path / "pki")
    images.build_release(tmp_path, "lab", "1.0", pki.cert, pki.key, files={"var/lib/dpkg/status": STATUS})
    dev = LabDevice(tmp_path / "dev", DeviceSpec("d", "http://127.0.0.1:9", "x", "lab", pki.ca, packages_from_slot=True))
    slot_a = dev.rauc.slot("A")
    slot_a.parent.mkdir(parents=True)
    shutil.copy(tmp_path / "content-1.0" / "rootfs.ext4", slot_a)
    dev._dpkg_from_slot("A")
    assert (dev.dpkg_dir / "status").read_text() == STATUS
    monkeypatch.setenv("DPKG_ADMINDIR", str(dev.dpkg_dir))  # as the lab starts the device's agent
    packages = installed_packages()
    assert packages == {"format": "dpkg", "count": 2, "packages": {"libssl3": "3.0.11-1~deb12u2", "rauc": "1.8-2"}}

    dev.rauc.slot("B").write_bytes(b"\0" * 65536)  # a slot without a file system: no packages
    dev._dpkg_from_slot("B")
    assert (dev.dpkg_dir / "status").read_text() == ""
