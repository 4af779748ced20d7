"""SBOM export (bulkhead.cra.sbom_export): every format passes its standard's validator and reads back to the same
components, for the real Yocto SBOMs of the shared testdata (SPDX 2.2 archive, SPDX 3.0.1) and Debian packages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from typing import Any

import pytest

from bulkhead.cra import SbomError, identify
from bulkhead.cra.components import read_sbom, read_spdx2
from bulkhead.cra.model import Component, ComponentOrigin
from bulkhead.cra.sbom_export import EXPORT_FORMATS, ReleaseMeta, export_sbom
from tests.sbom_validators import validate

WHEN = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
META = ReleaseMeta("qemu-x86-64", "2026.03.1", WHEN, "ab" * 32, "qemu-x86-64")

DEBIAN = [
    Component(
        "libssl3",
        "3.0.15-1~deb12u1+b1",
        ComponentOrigin.INVENTORY,
        purl="pkg:deb/debian/libssl3@3.0.15-1~deb12u1%2Bb1?arch=amd64&distro=debian-12&upstream=openssl",
        source_name="openssl",
        source_version="3.0.15-1~deb12u1",
        distro="debian",
        distro_release="bookworm",
        supplier="Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>",
        hashes=(("sha256", "0f" * 32), ("sha512", "1e" * 64)),
    ),
    Component(
        "busybox",
        "1.36.1",
        ComponentOrigin.SPDX,
        cpes=("cpe:2.3:a:busybox:busybox:1.36.1:*:*:*:*:*:*:*", "cpe:2.3:*:*:busybox:1.36.1:*:*:*:*:*:*:*"),
        source_name="busybox",
        source_version="1.36.1",
        supplier="OpenEmbedded",
        hashes=(("sha1", "2d" * 20),),
    ),
    Component(
        "linux-yocto",
        "6.6.21+git",
        ComponentOrigin.SPDX,
        cpes=("cpe:2.3:o:linux:linux_kernel:6.6.21:*:*:*:*:*:*:*",),
        is_kernel=True,
    ),
]


def _same(components: list[Component]) -> Counter[Component]:
    """Components as every format carries them: without the reader that made them and the SBOM's own VEX statements
    (the export writes the components, not their vulnerability analysis)."""
    return Counter(dataclasses.replace(c, origin=ComponentOrigin.SPDX, statements=()) for c in components)


def _round_trip(components: list[Component], fmt: str) -> tuple[str, list[Component]]:
    text = export_sbom(fmt, META, components)
    assert validate(fmt, text) == [], f"{fmt}: the standard's validator refuses the export"
    return text, read_sbom([json.loads(text)])


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_debian_and_yocto_components_round_trip_with_supplier_hashes_and_sources(fmt: str) -> None:
    _, back = _round_trip(DEBIAN, fmt)
    assert _same(back) == _same(DEBIAN)
    kernel = next(c for c in back if c.name == "linux-yocto")
    assert kernel.is_kernel and next(c for c in back if c.name == "libssl3").distro_release == "bookworm"


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_yocto_spdx2_image_sbom_round_trips(fmt: str, beaglebone_docs: list[dict[str, Any]]) -> None:
    components = read_spdx2(beaglebone_docs)
    assert len(components) == 33 and any(c.cpes for c in components) and any(c.supplier for c in components)
    _, back = _round_trip(components, fmt)
    assert _same(back) == _same(components)


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_yocto_spdx3_image_sbom_round_trips(fmt: str, spdx3_doc: dict[str, Any]) -> None:
    components = read_sbom([spdx3_doc])
    assert len(components) == 38
    _, back = _round_trip(components, fmt)
    assert _same(back) == _same(components)


def test_the_release_is_described_with_compatible_version_and_bundle_digest() -> None:
    cdx = json.loads(export_sbom("cyclonedx", META, DEBIAN))
    root = cdx["metadata"]["component"]
    assert (cdx["specVersion"], root["type"], root["name"], root["version"]) == (
        "1.6",
        "operating-system",
        "qemu-x86-64",
        "2026.03.1",
    )
    assert root["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert {"name": "bulkhead:compatible", "value": "qemu-x86-64"} in root["properties"]

    spdx = json.loads(export_sbom("spdx", META, DEBIAN))
    (described,) = [r["relatedSpdxElement"] for r in spdx["relationships"] if r["relationshipType"] == "DESCRIBES"]
    (release,) = [p for p in spdx["packages"] if p["SPDXID"] == described]
    assert (spdx["spdxVersion"], release["versionInfo"], release["primaryPackagePurpose"]) == (
        "SPDX-2.3",
        "2026.03.1",
        "OPERATING_SYSTEM",
    )
    assert release["checksums"] == [{"algorithm": "SHA256", "checksumValue": "ab" * 32}]
    assert sum(r["relationshipType"] == "CONTAINS" for r in spdx["relationships"]) == len(DEBIAN)

    spdx3 = json.loads(export_sbom("spdx3", META, DEBIAN))
    assert spdx3["@context"] == "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
    (release3,) = [e for e in spdx3["@graph"] if e.get("software_primaryPurpose") == "operatingSystem"]
    assert (release3["name"], release3["software_packageVersion"]) == ("qemu-x86-64", "2026.03.1")
    assert release3["verifiedUsing"] == [{"type": "Hash", "algorithm": "sha256", "hashValue": "ab" * 32}]


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_exports_are_identified_as_release_sboms(fmt: str) -> None:
    info = identify(json.loads(export_sbom(fmt, META, DEBIAN)))
    assert (info.format, info.components) == (fmt, len(DEBIAN) + (1 if fmt == "spdx" else 0))  # SPDX 2 counts the image


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_the_same_input_gives_the_same_document_and_new_content_a_new_identity(fmt: str) -> None:
    first = export_sbom(fmt, META, DEBIAN)
    assert export_sbom(fmt, META, DEBIAN) == first
    other = export_sbom(fmt, META, DEBIAN[:1])
    key = {"cyclonedx": "serialNumber", "spdx": "documentNamespace"}.get(fmt)
    if key:
        assert json.loads(other)[key] != json.loads(first)[key]
    else:
        assert json.loads(other)["@graph"][1]["spdxId"] != json.loads(first)["@graph"][1]["spdxId"]


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(SbomError, match="use one of cyclonedx, spdx, spdx3"):
        export_sbom("swid", META, DEBIAN)


def test_the_validators_catch_what_is_wrong() -> None:
    """The checks the round trips rely on are not vacuous: a broken document of each format fails its validator."""
    cdx = json.loads(export_sbom("cyclonedx", META, DEBIAN))
    cdx["components"][0]["type"] = "gadget"
    assert validate("cyclonedx", json.dumps(cdx))
    spdx = json.loads(export_sbom("spdx", META, DEBIAN))
    spdx["relationships"].append(
        {"spdxElementId": "SPDXRef-Release", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-Nope"}
    )
    assert validate("spdx", json.dumps(spdx))
    spdx3 = json.loads(export_sbom("spdx3", META, DEBIAN))
    next(e for e in spdx3["@graph"] if e.get("type") == "software_Package")["software_primaryPurpose"] = "gadget"
    assert validate("spdx3", json.dumps(spdx3))
