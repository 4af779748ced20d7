"""SPDX 3.0.1 JSON-LD reader on the real Yocto image SBOM: installed packages, recipes, VEX."""

from __future__ import annotations

from typing import Any

import pytest

from bulkhead.cra.components import read_sbom, read_spdx3
from bulkhead.cra.errors import SbomContentError
from bulkhead.cra.model import FindingStatus


def test_installed_packages_and_recipes(spdx3_doc: dict[str, Any]) -> None:
    comps = {c.name: c for c in read_sbom([spdx3_doc])}
    assert len(comps) == 38  # software_primaryPurpose: install; sources and the rootfs archive are not components
    assert (comps["libc6"].version, comps["libc6"].source_name) == ("2.41+git", "glibc")
    assert comps["libz1"].cpes == ("cpe:2.3:*:zlib:zlib:1.3.1:*:*:*:*:*:*:*", "cpe:2.3:*:gnu:zlib:1.3.1:*:*:*:*:*:*:*")
    assert {c.name for c in comps.values() if c.is_kernel} == {
        "kernel-6.12.38-yocto-standard",
        "kernel-image-6.12.38-yocto-standard",
        "kernel-image-bzimage-6.12.38-yocto-standard",
        "kernel-module-uvesafb-6.12.38-yocto-standard",
    }


def test_vex_relationships_become_statements(spdx3_doc: dict[str, Any]) -> None:
    comps = {c.name: c for c in read_spdx3(spdx3_doc)}
    zlib = {s.cve: s for s in comps["libz1"].statements}
    minizip = zlib["CVE-2023-45853"]
    assert (minizip.status, minizip.justification, minizip.detail) == (
        FindingStatus.NOT_AFFECTED,
        "vulnerableCodeNotPresent",
        "we don't build minizip",
    )
    # VexFixed for xz, and a statement about one package of a recipe holds for all its packages
    assert {s.cve: s.status for s in comps["liblzma5"].statements} == {"CVE-2025-31115": FindingStatus.FIXED}
    assert comps["busybox"].statements == comps["busybox-hwclock"].statements != ()
    all_statements = [s for c in comps.values() for s in c.statements]
    assert {s.status for s in all_statements} == {FindingStatus.FIXED, FindingStatus.NOT_AFFECTED}


def test_vex_without_a_cve_is_refused(spdx3_doc: dict[str, Any]) -> None:
    graph = [e for e in spdx3_doc["@graph"] if e.get("type") != "security_Vulnerability"]
    with pytest.raises(SbomContentError, match="has no CVE identifier"):
        read_spdx3({**spdx3_doc, "@graph": graph})
