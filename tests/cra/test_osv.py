"""OSV parser and matcher on the real records of shared/testdata/cve/osv (Go vuln DB, Ubuntu OSV, GitHub advisory)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bulkhead.cra.errors import VulnRecordError
from bulkhead.cra.match_osv import match_osv
from bulkhead.cra.model import Component, ComponentOrigin, FindingStatus
from bulkhead.cra.osv import OsvRange, OsvRecord, parse_osv
from tests.conftest import SHARED

OSV = SHARED / "cve" / "osv"
pytestmark = pytest.mark.skipif(not OSV.is_dir(), reason=f"shared testdata not found: {OSV}")
A, F = FindingStatus.AFFECTED, FindingStatus.FIXED


def load(name: str) -> Any:
    return json.loads((OSV / name).read_text())


def records() -> list[OsvRecord]:
    return [parse_osv(json.loads(p.read_text())) for p in sorted(OSV.glob("*.json"))]


def go(version: str) -> Component:
    return Component("runc", version, ComponentOrigin.CYCLONEDX, purl=f"pkg:golang/github.com/opencontainers/runc@v{version}")


def test_parse() -> None:
    rec = parse_osv(load("GO-2024-3110.json"))
    assert rec.cves == ("CVE-2024-45310",)
    (a,) = rec.affected
    assert (a.ecosystem, a.name) == ("Go", "github.com/opencontainers/runc")
    assert a.ranges == (
        OsvRange("SEMVER", (("introduced", "0"), ("fixed", "1.1.14"), ("introduced", "1.2.0-rc.1"), ("fixed", "1.2.0-rc.3"))),
    )
    ubuntu = parse_osv(load("UBUNTU-CVE-2024-6387.json"))
    assert ubuntu.aliases == () and ubuntu.cves == ("CVE-2024-6387",)  # distribution records use `related`


def test_go_module_ranges_with_two_introductions() -> None:
    got = {
        (f.component.version, f.cve): (f.status, f.fixed_version)
        for f in match_osv([go(v) for v in ("1.1.11", "1.1.14", "1.2.0-rc.2", "1.2.0")], records())
    }
    assert got == {
        ("1.1.11", "CVE-2024-21626"): (A, None),
        ("1.1.14", "CVE-2024-21626"): (F, "1.1.12"),
        ("1.2.0-rc.2", "CVE-2024-21626"): (F, "1.1.12"),
        ("1.2.0", "CVE-2024-21626"): (F, "1.1.12"),
        ("1.1.11", "CVE-2024-45310"): (A, None),
        ("1.1.14", "CVE-2024-45310"): (F, "1.1.14"),
        ("1.2.0-rc.2", "CVE-2024-45310"): (A, None),  # the second introduced/fixed pair, in semver pre-release order
        ("1.2.0", "CVE-2024-45310"): (F, "1.2.0-rc.3"),
    }


def test_distribution_records_match_source_package_and_release() -> None:
    def deb(distro: str, release: str, purl_distro: str, name: str, source: str, version: str) -> Component:
        purl = f"pkg:deb/{distro}/{name}@{version}?distro={purl_distro}"
        return Component(
            name, version, ComponentOrigin.INVENTORY, purl, source_name=source, distro=distro, distro_release=release
        )

    comps = [
        deb("ubuntu", "22.04", "ubuntu-22.04", "openssh-server", "openssh", "1:8.9p1-3ubuntu0.6"),  # listed version
        deb("ubuntu", "22.04", "ubuntu-22.04", "openssh-server", "openssh", "1:8.9p1-3ubuntu0.10"),  # the fix (epoch)
        deb("debian", "trixie", "debian-13", "liblzma5", "xz", "5.6.0-0.2"),
        deb("debian", "bookworm", "debian-12", "liblzma5", "xz", "5.6.0-0.2"),  # the advisory is for Debian:13 only
    ]
    got = {
        (f.component.version, f.component.distro_release, f.cve): (f.status, f.fixed_version, f.source)
        for f in match_osv(comps, records())
    }
    assert got == {
        ("1:8.9p1-3ubuntu0.6", "22.04", "CVE-2024-6387"): (A, None, "osv"),
        ("1:8.9p1-3ubuntu0.10", "22.04", "CVE-2024-6387"): (F, "1:8.9p1-3ubuntu0.10", "osv"),
        ("5.6.0-0.2", "trixie", "CVE-2024-3094"): (A, None, "osv"),
    }


def test_withdrawn_and_malformed_records() -> None:
    doc = load("GO-2024-2491.json")
    assert match_osv([go("1.1.11")], [parse_osv({**doc, "withdrawn": "2024-02-01T00:00:00Z"})]) == []
    doc["affected"][0]["ranges"][0]["events"].append({"introduced": "1.0.0", "fixed": "1.0.1"})
    with pytest.raises(VulnRecordError, match=r"^GO-2024-2491: range event .* exactly one of"):
        parse_osv(doc)
