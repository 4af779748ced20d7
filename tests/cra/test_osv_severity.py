"""OSV severity: the record's CVSS vectors scored with the `cvss` library (v4.0 before v3.x), else the database's own
rating; the app records of tests/server/data (derived from GitHub advisories) carry both."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bulkhead.cra.match_osv import match_osv
from bulkhead.cra.model import Component, ComponentOrigin, Severity
from bulkhead.cra.osv import parse_osv
from bulkhead.cra.osv_severity import osv_severity

RECORDS = Path(__file__).parents[1] / "server" / "data" / "osv-app-records.json"


def _requests() -> dict[str, object]:
    recs: list[dict[str, object]] = json.loads(RECORDS.read_text())
    return next(r for r in recs if r["id"] == "GHSA-j8r2-6x86-q33q")  # requests, CVE-2023-32681


def test_the_cvss_vector_is_scored() -> None:
    rec = parse_osv(_requests())
    assert rec.severity == (("CVSS_V3", "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"),)
    assert osv_severity(rec) == (Severity.MEDIUM, 6.1)  # the score NVD and GitHub give this vector


def test_v4_before_v3_and_the_database_rating_without_a_vector() -> None:
    rec = parse_osv(_requests())
    v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
    assert osv_severity(dataclasses.replace(rec, severity=(*rec.severity, ("CVSS_V4", v4)))) == (Severity.CRITICAL, 9.3)
    assert rec.database_severity == "MODERATE"
    assert osv_severity(dataclasses.replace(rec, severity=())) == (Severity.MEDIUM, None)
    broken = dataclasses.replace(rec, severity=(("CVSS_V3", "CVSS:3.1/AV:X"),), database_severity="HIGH")
    assert osv_severity(broken) == (Severity.HIGH, None)  # a malformed vector is skipped, not an error
    assert osv_severity(dataclasses.replace(rec, severity=(), database_severity=None)) == (Severity.UNKNOWN, None)


def test_findings_carry_the_records_severity_and_score() -> None:
    rec = parse_osv(_requests())
    c = Component("requests", "2.28.0", ComponentOrigin.CYCLONEDX, purl="pkg:pypi/requests@2.28.0")
    (f,) = match_osv([c], [rec])
    assert (f.cve, f.severity, f.cvss) == ("CVE-2023-32681", Severity.MEDIUM, 6.1)
