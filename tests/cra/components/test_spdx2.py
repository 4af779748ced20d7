"""SPDX 2 reader: the real Yocto scarthgap image SBOM (156 linked documents) and a single SPDX 2.3 document."""

from __future__ import annotations

from typing import Any

import pytest

from bulkhead.cra.components import read_sbom, read_spdx2, spdx_archive_documents
from bulkhead.cra.errors import SbomContentError, SbomError
from bulkhead.cra.model import ComponentOrigin, FindingStatus

from ..conftest import BEAGLEBONE, FIXTURES, load


def test_yocto_image_lists_installed_packages_with_their_recipe(beaglebone_docs: list[dict[str, Any]]) -> None:
    comps = {c.name: c for c in read_spdx2(beaglebone_docs)}
    assert len(comps) == 33  # the image document CONTAINS 33 packages; -native/-cross recipes are not installed
    assert not any(n.endswith("-native") for n in comps)
    libc = comps["libc6"]
    assert (libc.version, libc.source_name, libc.source_version) == ("2.39+git", "glibc", "2.39+git")
    assert libc.cpes == ("cpe:2.3:*:*:glibc:2.39:*:*:*:*:*:*:*",)
    assert libc.origin is ComponentOrigin.SPDX
    assert comps["libcrypto3"].cpes == ("cpe:2.3:*:openssl:openssl:3.2.3:*:*:*:*:*:*:*",)
    assert comps["liblzma5"].source_name == "xz"


def test_yocto_cves_fixed_become_fixed_statements(beaglebone_docs: list[dict[str, Any]]) -> None:
    comps = {c.name: c for c in read_spdx2(beaglebone_docs)}
    busybox = {s.cve: s for s in comps["busybox-udhcpc"].statements}
    assert set(busybox) == {
        "CVE-2023-42364",
        "CVE-2021-42380",
        "CVE-2023-42365",
        "CVE-2023-42363",
        "CVE-2023-42366",
        "CVE-2022-28391",
    }
    assert busybox["CVE-2023-42364"].status is FindingStatus.FIXED
    assert {s.cve for s in comps["libc6"].statements} >= {"CVE-2024-2961", "CVE-2024-33599"}
    assert comps["base-files"].statements == ()


def test_kernel_packages_are_flagged(beaglebone_docs: list[dict[str, Any]]) -> None:
    comps = read_spdx2(beaglebone_docs)
    kernel = {c.name for c in comps if c.is_kernel}
    assert kernel == {"kernel-devicetree", "kernel-image-6.6.21-yocto-standard", "kernel-image-zimage-6.6.21-yocto-standard"}
    assert all(c.source_name == "linux-yocto" for c in comps if c.is_kernel)


def test_a_partial_yocto_sbom_is_refused_with_what_to_do(beaglebone_docs: list[dict[str, Any]]) -> None:
    image = [d for d in beaglebone_docs if d["name"].startswith("core-image-minimal")]
    with pytest.raises(SbomContentError, match=r"pass every document of the image SBOM"):
        read_spdx2(image)


def test_debian_spdx23_document() -> None:
    comps = {c.name: c for c in read_sbom([load(FIXTURES / "debian-subset.spdx-2.3.json")])}
    assert set(comps) == {"libssl3", "rauc"}  # the image package itself is not a component
    ssl = comps["libssl3"]
    assert (ssl.source_name, ssl.source_version, ssl.distro, ssl.distro_release) == (
        "openssl",
        "3.0.15-1~deb12u1",
        "debian",
        "bookworm",
    )
    assert ssl.purl == "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64&distro=debian-12&upstream=openssl"


def test_a_broken_spdx_document_names_the_document() -> None:
    doc = load(FIXTURES / "debian-subset.spdx-2.3.json")
    del doc["packages"][1]["downloadLocation"]
    with pytest.raises(SbomContentError, match=r"bulkhead-debian-1\.0"):
        read_sbom([doc])


def test_unsupported_documents_are_refused() -> None:
    with pytest.raises(SbomError, match="SPDX version"):
        read_sbom([{"spdxVersion": "SPDX-2.1"}])
    with pytest.raises(SbomError, match="not an SBOM"):
        read_sbom([{"hello": 1}])


def test_the_deployed_archive_reads_like_its_extracted_members(beaglebone_docs: list[dict[str, Any]]) -> None:
    archive = BEAGLEBONE.parent / "example.rootfs.spdx.tar.zst"
    docs = spdx_archive_documents(archive.read_bytes())
    assert len(docs) == 155  # 156 members: index.json is a table of contents, not a document
    assert read_spdx2(docs) == read_spdx2(beaglebone_docs)


def test_a_truncated_or_oversized_archive_is_refused() -> None:
    data = (BEAGLEBONE.parent / "example.rootfs.spdx.tar.zst").read_bytes()
    with pytest.raises(SbomContentError, match="not a readable SPDX archive"):
        spdx_archive_documents(data[: len(data) // 2])
    with pytest.raises(SbomContentError, match="more than 1000 bytes"):
        spdx_archive_documents(data, max_bytes=1000)


def test_a_lone_recipe_document_is_its_recipe() -> None:
    path = BEAGLEBONE.parents[1] / "shipcheck-scarthgap-qemux86-64/core2-64/recipes/recipe-busybox.spdx.json"
    (busybox,) = read_spdx2([load(path)])  # the download package (busybox-source-1) has no version
    assert (busybox.name, busybox.version, busybox.cpes) == ("busybox", "1.36.1", ("cpe:2.3:*:*:busybox:1.36.1:*:*:*:*:*:*:*",))
    assert {"CVE-2022-48174", "CVE-2023-42364"} <= {s.cve for s in busybox.statements}
