"""Version order and range membership used by the generic matcher."""

from __future__ import annotations

import pytest

from bulkhead.cra.model import Component, ComponentOrigin
from bulkhead.cra.versions import compare, component_version, entry_contains, in_cpe_range
from bulkhead.cra.vulnrecord import CpeMatch, VersionEntry


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("6.6.21", "6.10", -1),  # numeric segments (a string or "generic" order gets this wrong)
        ("1.1.1y", "1.1.1", 1),  # OpenSSL letter releases
        ("9.8p1", "9.7p1", 1),  # OpenSSH portable releases
        ("2.39", "2.40", -1),
        ("3.2.3", "3.2.3", 0),
    ],
)
def test_order(a: str, b: str, expected: int) -> None:
    assert compare(a, b) == expected


def test_kernel_series_wildcard_and_open_end() -> None:
    fixed_in_66 = VersionEntry("unaffected", "6.6.34", less_than_or_equal="6.6.*", version_type="custom")
    assert entry_contains("6.6.40", fixed_in_66) is True
    assert entry_contains("6.6.21", fixed_in_66) is False
    assert entry_contains("6.7.1", fixed_in_66) is False  # another series
    assert entry_contains("6.12.38", VersionEntry("unaffected", "6.10", less_than_or_equal="*")) is True
    assert entry_contains("6.6.21", VersionEntry("unaffected", "6.10", less_than_or_equal="*")) is False


def test_constraint_strings_and_unevaluable_entries() -> None:
    runc = VersionEntry("affected", ">=v1.0.0-rc93, < 1.1.12")
    assert (entry_contains("1.1.11", runc), entry_contains("1.1.12", runc)) == (True, False)
    assert entry_contains("1.0.0", VersionEntry("affected", "a87cb3e48ee8", less_than="051c0bde9f04", version_type="git")) is None
    assert entry_contains("1.0.0", VersionEntry("affected", "n/a")) is None


def test_nvd_ranges() -> None:
    m = CpeMatch("cpe:2.3:a:libexpat_project:libexpat:*:*:*:*:*:*:*:*", version_end_excluding="2.6.3")
    assert (in_cpe_range("2.6.2", m), in_cpe_range("2.6.3", m)) == (True, False)
    exact = CpeMatch("cpe:2.3:a:tukaani:xz:5.6.1:*:*:*:*:*:*:*")
    assert (in_cpe_range("5.6.1", exact), in_cpe_range("5.4.6", exact)) == (True, False)


def test_component_version_is_the_upstream_version() -> None:
    yocto = Component("kernel-image", "6.6.21+git", ComponentOrigin.SPDX, cpes=("cpe:2.3:*:*:linux_kernel:6.6.21:*:*:*:*:*:*:*",))
    assert component_version(yocto) == "6.6.21"
    assert component_version(Component("busybox", "1.36.1-r0", ComponentOrigin.INVENTORY)) == "1.36.1"
    deb = Component("libssl3", "1:3.0.15-1~deb12u1", ComponentOrigin.INVENTORY, distro="debian")
    assert component_version(deb) == "3.0.15"
