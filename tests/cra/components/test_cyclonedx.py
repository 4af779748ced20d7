"""CycloneDX reader on derived fixtures (1.4 and 1.5, see fixtures/README.md) and the reference image's 1.6 BOM."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bulkhead.cra.components import read_cyclonedx, read_sbom
from bulkhead.cra.errors import SbomContentError
from bulkhead.cra.model import ComponentOrigin, FindingStatus
from bulkhead.osbuild.sbom import Package, cyclonedx

from ..conftest import FIXTURES, load


def test_components_cpes_nesting_and_vex() -> None:
    comps = {c.name: c for c in read_sbom([load(FIXTURES / "beaglebone-subset.cdx-1.5.json")])}
    assert set(comps) == {"libcrypto3", "busybox", "busybox-udhcpc", "kernel-image-zimage-6.6.21-yocto-standard"}
    assert comps["libcrypto3"].cpes == ("cpe:2.3:*:openssl:openssl:3.2.3:*:*:*:*:*:*:*",)
    assert comps["libcrypto3"].origin is ComponentOrigin.CYCLONEDX
    kernel = comps["kernel-image-zimage-6.6.21-yocto-standard"]
    assert kernel.is_kernel and not comps["busybox"].is_kernel
    (stmt,) = kernel.statements
    assert (stmt.cve, stmt.status, stmt.justification, stmt.detail) == (
        "CVE-2024-1086",
        FindingStatus.NOT_AFFECTED,
        "code_not_reachable",
        "nf_tables is not built",
    )
    assert [(s.cve, s.status) for s in comps["busybox"].statements] == [("CVE-2023-42364", FindingStatus.FIXED)]
    assert comps["busybox-udhcpc"].statements == ()  # the statement names busybox only


def test_cyclonedx_14_with_purl_upstream() -> None:
    (c,) = read_sbom([load(FIXTURES / "cdx-1.4-minimal.json")])
    assert (c.name, c.version, c.source_name, c.distro, c.distro_release) == (
        "libexpat1",
        "2.5.0-1",
        "expat",
        "debian",
        "bookworm",
    )


def test_reference_image_bom_carries_debian_sources() -> None:
    pkgs = [Package("libssl3", "3.0.15-1~deb12u1", "amd64", "openssl", "3.0.15-1~deb12u1")]
    doc = json.loads(json.dumps(cyclonedx(pkgs, "img", "1.0", dt.datetime(2024, 1, 1, tzinfo=dt.UTC))))
    (c,) = read_cyclonedx(doc)
    assert (c.source_name, c.source_version, c.distro_release) == ("openssl", "3.0.15-1~deb12u1", "bookworm")


def test_malformed_cyclonedx_is_refused() -> None:
    doc = load(FIXTURES / "cdx-1.4-minimal.json")
    doc["components"][0]["type"] = "not-a-type"
    with pytest.raises(SbomContentError, match="CycloneDX document cannot be read"):
        read_cyclonedx(doc)
