"""Generic/Yocto matcher, golden: the real scarthgap image SBOM with the real CVE 5 records, checked against Yocto
cve-check's report; SPDX 3 VEX; NVD records; product aliases, kernel marking and distribution entries."""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from typing import Any

import pytest

from bulkhead.cra.components import read_inventory, read_sbom
from bulkhead.cra.cve5 import parse_cve5
from bulkhead.cra.match_generic import match_component, match_generic
from bulkhead.cra.model import Component, ComponentOrigin, Finding, FindingStatus, SbomVulnStatement
from bulkhead.cra.nvd import parse_nvd_cve, parse_nvd_response
from bulkhead.cra.vulnrecord import VulnRecord
from tests.conftest import SHARED

CVE_DIR = SHARED / "cve"
CVE_CHECK = SHARED / "yocto-cve-check/shipcheck-scarthgap-qemux86-64"
pytestmark = pytest.mark.skipif(not CVE_DIR.is_dir(), reason=f"shared testdata not found: {CVE_DIR}")
A, F, N, U = FindingStatus.AFFECTED, FindingStatus.FIXED, FindingStatus.NOT_AFFECTED, FindingStatus.UNDER_INVESTIGATION


@cache
def records() -> tuple[VulnRecord, ...]:
    return tuple(parse_cve5(json.loads(p.read_text())) for p in sorted(CVE_DIR.glob("CVE-*.json")))


def record(cve: str) -> VulnRecord:
    return next(r for r in records() if r.id == cve)


def by_recipe(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    """One finding per (recipe, CVE); every binary package of a recipe must get the same verdict."""
    out: dict[tuple[str, str], Finding] = {}
    for f in findings:
        key = (f.component.source_name or f.component.name, f.cve)
        if key in out:
            assert (out[key].status, out[key].reason) == (f.status, f.reason), key
        out[key] = f
    return out


# The scarthgap image (core-image-minimal, beaglebone-yocto: linux-yocto 6.6.21, glibc 2.39+git, openssl 3.2.3,
# busybox 1.36.1, xz 5.4.6, zlib 1.3.1, util-linux 2.39.3) x the 32 CVE 5 records: (status, fixed version, source).
GOLDEN_SCARTHGAP = {
    # the recipes' "CVEs fixed" (Yocto patches / CVE_STATUS) decide, whatever the record's version data says
    ("busybox", "CVE-2023-42364"): (F, None, "sbom"),  # record has product "n/a": only the SBOM names busybox
    ("glibc", "CVE-2024-2961"): (F, None, "sbom"),  # 2.39 is inside [2.1.93, 2.40): fixed by a backported patch
    ("util-linux", "CVE-2024-28085"): (F, None, "sbom"),  # 2.39.3 is inside ADP's [0, 2.40]: patched
    ("linux-yocto", "CVE-2024-1086"): (F, None, "sbom"),  # 6.6.21 is inside [3.15, 6.8): fixed in linux-yocto's tree
    # version data of the CNA (or, for zlib, CISA's ADP)
    ("zlib", "CVE-2023-45853"): (F, "1.3", "cve5"),  # ADP: affected [0, 1.3)
    ("glibc", "CVE-2023-6246"): (N, None, "cve5"),  # Red Hat's CNA entry: glibc 2.39 unaffected
    ("openssl", "CVE-2024-2511"): (F, "3.2.2", "cve5"),
    ("openssl", "CVE-2024-5535"): (F, "3.2.3", "cve5"),
    ("openssl", "CVE-2024-6119"): (F, "3.2.3", "cve5"),
    ("xz", "CVE-2024-3094"): (N, None, "cve5"),  # only 5.6.0 and 5.6.1 (packageName xz); RHEL entries do not count
    ("linux-yocto", "CVE-2024-26925"): (A, None, "cve5"),  # default affected; 6.6 fixed from 6.6.26 on
    ("linux-yocto", "CVE-2024-36971"): (A, None, "cve5"),  # default affected; 6.6 fixed from 6.6.34 on
}
# Records that give no finding for this image, and why (a matcher that guesses products from descriptions would
# have to explain itself here).
NO_FINDING = {
    "CVE-2022-48174": "busybox ash; the record says vendor/product n/a and this build's busybox recipe does not list it",
    "CVE-2023-26604": "systemd is not in the image (sysvinit); the record says n/a anyway",
    "CVE-2023-34969": "dbus is not in the image; the record says n/a",
    "CVE-2023-38408": "openssh is not in the image; the record says n/a",
    "CVE-2023-38545": "curl is not in the image",
    "CVE-2023-52425": "expat is not in the image (only expat-native, a build tool)",
    "CVE-2024-0232": "sqlite is not in the image",
    "CVE-2024-21626": "runc is not in the image",
    "CVE-2024-2398": "curl is not in the image",
    "CVE-2024-34459": "libxml2 is not in the image",
    "CVE-2024-4032": "python3 is not in the image",
    "CVE-2024-45310": "runc is not in the image",
    "CVE-2024-45490": "expat is not in the image",
    "CVE-2024-45491": "expat is not in the image",
    "CVE-2024-45492": "expat is not in the image",
    "CVE-2024-6232": "python3 is not in the image",
    "CVE-2024-6387": "openssh is not in the image",
    "CVE-2024-7264": "curl is not in the image",
    "CVE-2025-32463": "sudo is not in the image",
    "CVE-2026-34155": "rauc is not in core-image-minimal",
}


def test_scarthgap_image_golden(beaglebone_docs: list[dict[str, Any]]) -> None:
    findings = by_recipe(match_generic(read_sbom(beaglebone_docs), records()))
    got = {k: (f.status, f.fixed_version, f.source) for k, f in findings.items()}
    assert got == GOLDEN_SCARTHGAP
    assert {r.id for r in records()} - {cve for _, cve in got} == set(NO_FINDING)
    kernel = [f for (recipe, _), f in findings.items() if recipe == "linux-yocto"]
    assert kernel and all(f.kernel and (f.source == "sbom" or f.reason.startswith("Linux kernel:")) for f in kernel)
    assert not any(f.kernel for (recipe, _), f in findings.items() if recipe != "linux-yocto")


def test_the_index_finds_what_matching_every_pair_finds(beaglebone_docs: list[dict[str, Any]]) -> None:
    comps = read_sbom(beaglebone_docs) + inventory(python3="3.12.3", openssh="9.6p1", curl="8.7.1", expat="2.6.2")
    every_pair = [f for r in records() for c in comps if (f := match_component(c, r)) is not None]
    indexed = match_generic(comps, records())
    assert len(indexed) == len(every_pair) > len(GOLDEN_SCARTHGAP)
    assert {(f.cve, f.component.name, f.status) for f in indexed} == {(f.cve, f.component.name, f.status) for f in every_pair}


SHIPCHECK = SHARED / "yocto-spdx/spdx-2.2/shipcheck-scarthgap-qemux86-64"


def test_the_recipes_of_the_cve_check_build() -> None:
    """The five recipe documents of the build whose cve-check reports are in the testdata (openssl 3.5.5, busybox
    1.36.1 with CVE-2022-48174 in its "CVEs fixed": this build patched it, the beaglebone build did not list it)."""
    comps = read_sbom([json.loads(p.read_text()) for p in sorted(SHIPCHECK.rglob("recipe-*.spdx.json"))])
    got = {(f.component.name, f.cve): (f.status, f.fixed_version, f.source) for f in match_generic(comps, records())}
    assert got == {
        ("busybox", "CVE-2022-48174"): (F, None, "sbom"),
        ("busybox", "CVE-2023-42364"): (F, None, "sbom"),
        ("openssl", "CVE-2024-2511"): (F, "3.2.2", "cve5"),  # the latest fix below 3.5.5 among the CNA's ranges
        ("openssl", "CVE-2024-5535"): (F, "3.3.2", "cve5"),
        ("openssl", "CVE-2024-6119"): (F, "3.3.2", "cve5"),
    }  # libxml2-native is a build tool named by its recipe ("-native"): no CVE_PRODUCT alias, ADP names xmllint
    report = json.loads((CVE_CHECK / "cve-summary.json").read_text())
    versions = {(p["name"], p["version"]) for p in report["package"]}
    assert {("busybox", "1.36.1"), ("openssl", "3.5.5")} <= versions  # the report is of this very build


def _cve_check_issues() -> dict[tuple[str, str], dict[str, Any]]:
    """Issues of the cve-check (cve-summary.json) and sbom-cve-check (yocto.json) reports of the scarthgap build."""
    out = {}
    for name in ("cve-summary.json", "core-image-minimal-qemux86-64.sbom-cve-check.yocto.json"):
        for package in json.loads((CVE_CHECK / name).read_text())["package"]:
            for issue in package.get("issue", []):
                out[(package["name"], issue["id"])] = {**issue, "version": package["version"], "report": name}
    return out


# cve-check's vocabulary: Patched (with detail fixed-version / version-not-in-range / patched), Unpatched, Ignored.
CVE_CHECK_STATUS = {F: "Patched", N: "Patched", A: "Unpatched", U: "Unpatched"}
CVE_CHECK_DETAIL = {"fixed-version": F, "version-not-in-range": N, "patched": F}
# (recipe, CVE) where our status differs from cve-check's report, and why. Empty today: both overlapping CVEs agree.
# The reports come from another scarthgap build of core-image-minimal (qemux86-64, poky cb2dcb49: xz 5.4.7) than
# the image SBOM (beaglebone-yocto: xz 5.4.6); both versions lie outside CVE-2024-3094's 5.6.0/5.6.1, and zlib is
# 1.3.1 in both. Upstream trimmed both reports (at most 3 / 20 issues per package), so only 2 of the 32 records'
# CVEs appear in them.
EXPECTED_DIFFERENCES: dict[tuple[str, str], str] = {}


def test_statuses_equal_yocto_cve_check_for_the_same_cves(beaglebone_docs: list[dict[str, Any]]) -> None:
    if not CVE_CHECK.is_dir():
        pytest.skip(f"shared testdata not found: {CVE_CHECK}")
    ours = by_recipe(match_generic(read_sbom(beaglebone_docs), records()))
    ids = {r.id for r in records()}
    overlap = {k: v for k, v in _cve_check_issues().items() if k[1] in ids}
    assert set(overlap) == {("xz", "CVE-2024-3094"), ("zlib", "CVE-2023-45853")}
    differences = {}
    for key, issue in overlap.items():
        finding = ours.get(key)
        status = CVE_CHECK_STATUS[finding.status] if finding else "no finding"
        detail = (issue.get("detail") or "").split(":", 1)[0]
        same = status == issue["status"] and (detail not in CVE_CHECK_DETAIL or CVE_CHECK_DETAIL[detail] == finding.status)  # type: ignore[union-attr]
        if not same:
            differences[key] = f"ours {finding.status if finding else None}, cve-check {issue['status']} ({issue.get('detail')})"
    assert set(differences) == set(EXPECTED_DIFFERENCES), differences


def test_spdx3_vex_is_honoured(spdx3_doc: dict[str, Any]) -> None:
    comps = read_sbom([spdx3_doc])
    ids = {r.id for r in records()}
    stated = [(c, s) for c in comps for s in c.statements if s.cve in ids]
    assert stated, "the SPDX 3 image has VEX statements for CVEs among the records"
    for c, s in stated:
        f = match_component(c, record(s.cve))
        assert f is not None and (f.status, f.source) == (s.status, "sbom")
    libz = next(c for c in comps if c.name == "libz1")
    minizip = match_component(libz, record("CVE-2023-45853"))
    assert minizip is not None and (minizip.status, minizip.source) == (N, "sbom")
    assert "we don't build minizip" in minizip.reason
    # without the VEX the version data alone would call it fixed (1.3.1 is past [0, 1.3))
    plain = match_component(dataclasses.replace(libz, statements=()), record("CVE-2023-45853"))
    assert plain is not None and (plain.status, plain.fixed_version) == (F, "1.3")


def test_spdx3_kernel_past_the_fixes(spdx3_doc: dict[str, Any]) -> None:
    kernel = next(c for c in read_sbom([spdx3_doc]) if c.name.startswith("kernel-image-bzimage"))
    got = {cve: match_component(kernel, record(cve)) for cve in ("CVE-2024-1086", "CVE-2024-26925", "CVE-2024-36971")}
    assert {cve: (f.status, f.fixed_version, f.kernel) for cve, f in got.items() if f} == {
        "CVE-2024-1086": (F, "6.8", True),  # 6.12.38 is past [3.15, 6.8)
        "CVE-2024-26925": (F, "6.9", True),  # inside "unaffected 6.9 <= *" of a default-affected history
        "CVE-2024-36971": (F, "6.10", True),
    }


def test_nvd_records(beaglebone_docs: list[dict[str, Any]]) -> None:
    nvd = SHARED / "cve" / "nvd"
    (xz,) = parse_nvd_response(json.loads((nvd / "CVE-2024-3094.nvd-api-2.0.json").read_text()))
    (webp,) = parse_nvd_response(json.loads((nvd / "CVE-2023-4863.nvd-api-2.0.json").read_text()))
    image = read_sbom(beaglebone_docs)
    found = by_recipe(match_generic(image, [xz, webp]))
    assert {k: (f.status, f.source) for k, f in found.items()} == {("xz", "CVE-2024-3094"): (N, "nvd")}
    expat = parse_nvd_cve(json.loads((nvd / "CVE-2024-45490.fkie-nvd-json-data-feeds.json").read_text()))
    old, new = (Component("libexpat1", v, ComponentOrigin.INVENTORY, source_name="expat") for v in ("2.6.2", "2.6.3"))
    assert match_component(old, expat).status is A  # type: ignore[union-attr]
    fixed = match_component(new, expat)
    assert fixed is not None and (fixed.status, fixed.fixed_version, fixed.source) == (F, "2.6.3", "nvd")


def inventory(**packages: str) -> list[Component]:
    return read_inventory({"format": "opkg", "packages": packages}, {"ID": "poky", "VERSION_CODENAME": "scarthgap"})


def test_aliases_kernel_and_distribution_entries() -> None:
    comps = {c.name: c for c in inventory(python3="3.12.3-r0", openssh="9.6p1-r0", runc="1.1.12")}
    comps |= {c.name: c for c in inventory(**{"kernel-image-bzimage-6.6.21-yocto-standard": "6.6.21+git0-r0"})}
    py = match_component(comps["python3"], record("CVE-2024-4032"))  # CNA "Python Software Foundation"/"CPython"
    assert py is not None and py.status is A and "[3.12.0, 3.12.4)" in py.reason
    ssh = match_component(comps["openssh"], record("CVE-2024-6387"))  # packageName OpenSSH, beside 14 RHEL entries
    assert ssh is not None and ssh.status is A and "cna OpenSSH" in ssh.reason
    newer = match_component(dataclasses.replace(comps["openssh"], version="9.8p1"), record("CVE-2024-6387"))
    assert newer is not None and newer.status is F  # the RHEL "unaffected 0:8.7p1-38.el9_4.1" entries do not apply
    assert match_component(comps["runc"], record("CVE-2024-21626")).status is N  # type: ignore[union-attr]
    k = match_component(comps["kernel-image-bzimage-6.6.21-yocto-standard"], record("CVE-2024-26925"))
    assert k is not None and k.kernel and k.status is A and k.reason.startswith("Linux kernel:")


def test_statement_wins_and_rejected_records_give_nothing() -> None:
    (busybox,) = inventory(busybox="1.36.1-r0")
    assert match_component(busybox, record("CVE-2023-42364")) is None  # the record names no product
    said = dataclasses.replace(busybox, statements=(SbomVulnStatement("CVE-2023-42364", F, "yocto-patched"),))
    f = match_component(said, record("CVE-2023-42364"))
    assert f is not None and (f.status, f.source) == (F, "sbom")
    rejected = dataclasses.replace(record("CVE-2024-1086"), state="REJECTED")
    (kernel,) = inventory(**{"kernel-image-6.6.21": "6.6.21"})
    assert match_component(kernel, record("CVE-2024-1086")) is not None
    assert match_component(kernel, rejected) is None


def _with_compiled_sources(doc: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """The real SPDX 3 image SBOM, derived: the linux-yocto build gets compiled source files as inputs, the way Yocto
    writes them with SPDX_INCLUDE_COMPILED_SOURCES (`software_File`s of purpose `source`, `hasInput` from the build)."""
    graph = [dict(e) for e in doc["@graph"]]
    build = next(e for e in graph if e.get("type") == "build_Build" and e.get("name") == "linux-yocto:do_create_spdx:recipe")
    ids = [f"http://example.invalid/linux-yocto/source/{i}" for i in range(len(files))]
    graph += [
        {
            "type": "software_File",
            "spdxId": i,
            "creationInfo": build["creationInfo"],
            "name": f,
            "software_primaryPurpose": "source",
        }
        for i, f in zip(ids, files, strict=True)
    ]
    graph.append(
        {"type": "Relationship", "spdxId": "http://example.invalid/linux-yocto/inputs", "creationInfo": build["creationInfo"],
         "from": build["spdxId"], "relationshipType": "hasInput", "to": ids}
    )  # fmt: skip
    return {**doc, "@graph": graph}


def test_kernel_cves_in_files_not_compiled_into_the_kernel_do_not_concern_it(spdx3_doc: dict[str, Any]) -> None:
    def kernel(doc: dict[str, Any]) -> Component:
        k = next(c for c in read_sbom([doc]) if c.name.startswith("kernel-image-bzimage"))
        cpes = tuple(c.replace(":6.12.38:", ":6.6.21:") for c in k.cpes)  # a kernel inside both records' affected ranges
        return dataclasses.replace(k, version="6.6.21", source_version="6.6.21", cpes=cpes)

    assert kernel(spdx3_doc).compiled_sources is None  # this build did not list its compiled sources
    plain = {cve: match_component(kernel(spdx3_doc), record(cve)) for cve in ("CVE-2024-26925", "CVE-2024-36971")}
    assert {cve: f.status for cve, f in plain.items() if f} == {"CVE-2024-26925": A, "CVE-2024-36971": A}

    # nf_tables is not built into this kernel; net/ipv4/route.c is (listed with Yocto's debug-source prefix)
    compiled = ["kernel/fork.c", "/usr/src/debug/linux-yocto/6.6.21/net/ipv4/route.c", "include/net/sock.h"]
    k = kernel(_with_compiled_sources(spdx3_doc, compiled))
    assert k.compiled_sources == frozenset(compiled)
    nft = match_component(k, record("CVE-2024-26925"))
    assert nft is not None and nft.status is N and nft.kernel
    assert "net/netfilter/nf_tables_api.c" in nft.reason and "3 sources" in nft.reason and nft.reason.startswith("Linux kernel:")
    route = match_component(k, record("CVE-2024-36971"))
    assert route is not None and route.status is A
    # the index path gives the same verdicts
    found = {f.cve: f.status for f in match_generic([k], [record("CVE-2024-26925"), record("CVE-2024-36971")])}
    assert found == {"CVE-2024-26925": N, "CVE-2024-36971": A}
    # a recipe's few SRC_URI files (no C source) are not a compiled-sources list
    assert kernel(_with_compiled_sources(spdx3_doc, ["defconfig", "fragment.cfg"])).compiled_sources is None
