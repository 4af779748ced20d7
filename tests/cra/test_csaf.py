"""CSAF 2.0 advisories from releases, findings and VEX: valid against the CSAF schema and the mandatory tests."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from bulkhead.cra.csaf import (
    AdvisoryInput,
    CsafError,
    CveInfo,
    FindingInfo,
    ProductInfo,
    Publisher,
    ReleaseInfo,
    Revision,
    Tracking,
    build_advisory,
    document_bytes,
    filename,
)
from tests.csaf_validators import mandatory_failures, schema_errors

T0 = dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC)
PRODUCT = ProductInfo("acme-gw", "Acme Gateway", "Acme GmbH", dt.date(2031, 12, 31))
RELEASES = (
    ReleaseInfo(1, "1.0", T0),
    ReleaseInfo(2, "1.1", T0 + dt.timedelta(days=10)),
    ReleaseInfo(3, "2.0", T0 + dt.timedelta(days=20)),
)
FINDINGS = (
    FindingInfo(1, "CVE-2026-1000", "openssl", "3.0.2", "affected", "critical", 9.8, "3.0.9", kev=True),
    FindingInfo(2, "CVE-2026-1000", "openssl", "3.0.2", "affected", "critical", 9.8, "3.0.9", kev=True),
    FindingInfo(
        1, "CVE-2026-2000", "busybox", "1.36", "not_affected", "high", 7.5, None, False, "code_not_reachable", "not built"
    ),
    FindingInfo(2, "CVE-2026-2000", "busybox", "1.36", "affected", "high", 7.5, None, action="disable telnetd"),
    FindingInfo(3, "CVE-2026-2000", "busybox", "1.36", "affected", "high", 7.5, None, action="disable telnetd"),
)


def advisory(status: str = "final", **kw: object) -> AdvisoryInput:
    revs = (Revision("1", T0 + dt.timedelta(days=21), "Initial public release"),)
    values: dict[str, object] = {
        "publisher": Publisher("Acme GmbH", "https://acme.example", "psirt@acme.example"),
        "product": PRODUCT,
        "releases": RELEASES,
        "findings": FINDINGS,
        "cves": (
            CveInfo("CVE-2026-1000", "A buffer overflow in X.509 parsing.", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            CveInfo("CVE-2026-2000", None),
        ),
        "title": "OpenSSL and BusyBox vulnerabilities in Acme Gateway",
        "tracking": Tracking("ACME-2026-0001", status, "1", revs, revs[0].date, revs[0].date),
        "self_url": "https://acme.example/.well-known/csaf/white/2026/acme-2026-0001.json",
        "generator_version": "0.1.0",
    }
    values.update(kw)
    return AdvisoryInput(**values)  # type: ignore[arg-type]


def test_statuses_remediation_and_support_note() -> None:
    doc = build_advisory(advisory())
    v1, v2 = doc["vulnerabilities"]
    assert v1["cve"] == "CVE-2026-1000"
    assert v1["product_status"] == {"fixed": ["acme-gw-2.0"], "known_affected": ["acme-gw-1.0", "acme-gw-1.1"]}
    assert v1["remediations"] == [
        {
            "category": "vendor_fix",
            "details": "Update to Acme Gateway 2.0 or later.",
            "product_ids": ["acme-gw-1.0", "acme-gw-1.1"],
        }
    ]
    assert v1["scores"][0]["cvss_v3"]["baseScore"] == 9.8 and v1["scores"][0]["cvss_v3"]["baseSeverity"] == "CRITICAL"
    assert any(n["title"] == "Known exploited" for n in v1["notes"])
    # VEX: 1.0 not affected (flag from the justification, threat from the impact); 1.1 and 2.0 affected, no fix yet
    assert v2["product_status"] == {"known_affected": ["acme-gw-1.1", "acme-gw-2.0"], "known_not_affected": ["acme-gw-1.0"]}
    assert v2["flags"] == [{"label": "vulnerable_code_not_in_execute_path", "product_ids": ["acme-gw-1.0"]}]
    assert v2["threats"] == [{"category": "impact", "details": "not built", "product_ids": ["acme-gw-1.0"]}]
    assert [r["category"] for r in v2["remediations"]] == ["none_available", "mitigation"]
    notes = {n["title"]: n["text"] for n in doc["document"]["notes"]}
    assert "2031-12-31" in notes["Support period"]
    tree = doc["product_tree"]["branches"][0]
    assert tree["name"] == "Acme GmbH" and tree["branches"][0]["name"] == "Acme Gateway"
    assert [b["name"] for b in tree["branches"][0]["branches"]] == ["1.0", "1.1", "2.0"]
    assert doc["document"]["aggregate_severity"] == {"text": "critical"}


def test_deterministic() -> None:
    a = advisory()
    shuffled = advisory(findings=tuple(reversed(FINDINGS)), releases=tuple(reversed(RELEASES)))
    assert document_bytes(build_advisory(a)) == document_bytes(build_advisory(shuffled))


def test_valid_against_csaf_schema() -> None:
    for status in ("draft", "final"):
        assert schema_errors(build_advisory(advisory(status))) == []


def test_schema_check_is_real() -> None:
    """The schema check catches a broken document (so a pass above means something)."""
    doc = copy.deepcopy(build_advisory(advisory()))
    doc["vulnerabilities"][0]["cve"] = "CVE-26-1"
    del doc["document"]["publisher"]["namespace"]
    assert len(schema_errors(doc)) == 2


def test_mandatory_tests_pass() -> None:
    assert mandatory_failures(build_advisory(advisory())) == []
    assert mandatory_failures(build_advisory(advisory("draft"))) == []


def test_mandatory_tests_catch_contradictions() -> None:
    doc = copy.deepcopy(build_advisory(advisory()))
    doc["vulnerabilities"][0]["product_status"]["fixed"].append("acme-gw-1.0")  # 6.1.6 contradicting status
    doc["vulnerabilities"][1]["product_status"]["known_affected"].append("no-such-product")  # 6.1.1
    failures = " ".join(mandatory_failures(doc))
    assert "6_1_6" in failures and "6_1_1" in failures


def test_filename_and_bad_input() -> None:
    assert filename("ACME-2026-0001") == "acme-2026-0001.json"
    assert filename("Acme SA/2026:1") == "acme_sa_2026_1.json"
    with pytest.raises(CsafError, match="not a valid CVSS vector"):
        build_advisory(advisory(cves=(CveInfo("CVE-2026-1000", None, "CVSS:3.1/AV:Q"),)))
    with pytest.raises(CsafError, match="at least one vulnerability"):
        build_advisory(advisory(cves=()))
    with pytest.raises(CsafError, match="no release"):
        build_advisory(advisory(releases=()))
