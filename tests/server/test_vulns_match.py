"""The server's matching glue (services/vuln_match.py), without a server: the record index picks exactly the records
the generic matcher would use, and a device's reported packages laid over its release's components."""

from __future__ import annotations

import json

import pytest

from bulkhead.cra.components import read_sbom
from bulkhead.cra.cve5 import parse_cve5
from bulkhead.cra.match_generic import match_generic
from bulkhead.cra.model import ComponentOrigin
from bulkhead.cra.nvd import parse_nvd_cve, parse_nvd_response
from bulkhead.server.services.vuln_match import candidate_records, inventory_key, match, profile_components
from bulkhead.server.vuln_feeds import Knowledge
from tests.conftest import SHARED
from tests.cra.conftest import BEAGLEBONE
from tests.server.vuln_fixtures import CDX_YOCTO, SPDX_DEBIAN

BOOKWORM = {"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm"}


def _knowledge() -> Knowledge:
    k = Knowledge()
    records = [parse_cve5(json.loads(p.read_text())) for p in sorted((SHARED / "cve").glob("CVE-*.json"))]
    for p in sorted((SHARED / "cve/nvd").glob("*.json")):
        doc = json.loads(p.read_text())
        records += parse_nvd_response(doc) if "vulnerabilities" in doc else [parse_nvd_cve(doc)]
    for r in records:
        k.records.setdefault(r.id, []).append(r)
    return k


def test_the_record_index_finds_what_matching_every_record_finds() -> None:
    if not BEAGLEBONE.is_dir():
        pytest.skip(f"shared testdata not found: {BEAGLEBONE}")
    k = _knowledge()
    components = read_sbom(
        [json.loads(p.read_text()) for p in sorted(BEAGLEBONE.glob("*.spdx.json"))]
    )  # the real scarthgap image SBOM, 156 SPDX 2.2 documents
    everything = match_generic(components, list(k.all_records()))
    assert len(everything) > 10
    picked = candidate_records(components, k)
    assert len(picked) < len(list(k.all_records()))  # records of products the image does not have are left out
    key = lambda f: (f.cve, f.component.name, f.component.version, f.status, f.reason)  # noqa: E731
    assert sorted(map(key, match_generic(components, picked))) == sorted(map(key, everything))
    assert {(f.cve, f.component.name) for f in match(components, k)} == {(f.cve, f.component.name) for f in everything}


def test_reported_packages_replace_release_components_and_keep_their_identity() -> None:
    base = read_sbom([json.loads(CDX_YOCTO.read_text())])
    inventory = {"packages": {"format": "opkg", "packages": {"libcrypto3": "3.2.1-r0", "busybox": "1.36.1", "nano": "7.2-r0"}}}
    got = {c.name: c for c in profile_components(base, inventory)}
    ssl = got["libcrypto3"]
    assert ssl.version == "3.2.1-r0" and ssl.origin is ComponentOrigin.INVENTORY
    assert ssl.cpes == ("cpe:2.3:*:openssl:openssl:3.2.1:*:*:*:*:*:*:*",)  # the CPE now names the reported version
    assert got["busybox"].origin is ComponentOrigin.CYCLONEDX and got["busybox"].statements  # same version: the SBOM's
    assert got["nano"].origin is ComponentOrigin.INVENTORY  # not in the release: added
    assert any(n.startswith("kernel-image") for n in got)  # not reported: the image still has it
    assert profile_components(base, {}) == base


def test_a_debian_binary_package_keeps_its_source_package_at_the_reported_version() -> None:
    base = read_sbom([json.loads(SPDX_DEBIAN.read_text())])
    _, part = inventory_key(
        {"os_release": BOOKWORM, "packages": {"format": "dpkg", "count": 1, "packages": {"libssl3": "3.0.11-1~deb12u2"}}}
    )
    ssl = next(c for c in profile_components(base, part) if c.name == "libssl3")
    assert (ssl.source_name, ssl.source_version, ssl.distro) == ("openssl", "3.0.11-1~deb12u2", "debian")
    assert ssl.purl and "libssl3@3.0.11-1~deb12u2" in ssl.purl and "distro=debian-12" in ssl.purl


def test_the_inventory_key_reads_only_packages_and_os_release() -> None:
    pkgs = {"format": "dpkg", "count": 1, "packages": {"rauc": "1.8-2"}}
    a, _ = inventory_key({"os_release": BOOKWORM, "packages": pkgs, "rauc": {"booted": "A"}, "containers": []})
    b, _ = inventory_key({"os_release": {**BOOKWORM, "PRETTY_NAME": "x"}, "packages": pkgs, "rauc": {"booted": "B"}})
    assert a == b != ""
    assert inventory_key({"os_release": BOOKWORM, "packages": {"format": None, "count": 0, "packages": {}}})[0] == ""
