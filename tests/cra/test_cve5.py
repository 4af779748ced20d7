"""CVE JSON 5 parser on the real records of shared/testdata/cve."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from bulkhead.cra.cve5 import parse_cve5
from bulkhead.cra.errors import VulnRecordError
from bulkhead.cra.model import Severity
from bulkhead.cra.vulnrecord import VersionEntry
from tests.conftest import SHARED

CVE_DIR = SHARED / "cve"
pytestmark = pytest.mark.skipif(not CVE_DIR.is_dir(), reason=f"shared testdata not found: {CVE_DIR}")


def record(cve: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((CVE_DIR / f"{cve}.json").read_text())
    return doc


def test_every_record_parses() -> None:
    paths = sorted(Path(CVE_DIR).glob("CVE-*.json"))
    assert len(paths) == 32
    assert all(parse_cve5(json.loads(p.read_text())).id == p.stem for p in paths)


def test_cna_ranges_metrics_and_dates() -> None:
    r = parse_cve5(record("CVE-2024-5535"))
    openssl = r.affected[0]
    assert (openssl.vendor, openssl.product, openssl.container) == ("OpenSSL", "OpenSSL", "cna")
    assert openssl.versions[1] == VersionEntry("affected", "3.2.0", less_than="3.2.3", version_type="semver")
    adp = [a for a in r.affected if a.container == "adp:CISA-ADP"]
    assert adp and adp[0].cpes == ("cpe:2.3:a:openssl:openssl:*:*:*:*:*:*:*:*",)
    (metric,) = r.metrics
    assert (metric.version, metric.base_score, metric.base_severity, metric.source) == (
        "3.1",
        9.1,
        Severity.CRITICAL,
        "adp:CISA-ADP",
    )
    assert r.published == dt.datetime(2024, 6, 27, 10, 30, 53, 118000, tzinfo=dt.UTC)
    assert r.description.startswith("Issue summary: Calling the OpenSSL API function SSL_select_next_proto")


def test_kernel_record_git_and_wildcard_ranges() -> None:
    r = parse_cve5(record("CVE-2024-36971"))
    cna = [a for a in r.affected if a.container == "cna"]
    assert {v.version_type for v in cna[0].versions} == {"git"}
    semver = cna[1]
    assert semver.default_status == "affected"
    assert VersionEntry("unaffected", "5.4.278", less_than_or_equal="5.4.*", version_type="custom") in semver.versions
    assert "net/ipv4/route.c" in semver.program_files


def test_cvss_40_and_cpe_applicability() -> None:
    rauc = parse_cve5(record("CVE-2026-34155"))
    assert [(m.version, m.base_severity) for m in rauc.metrics] == [("4.0", Severity.HIGH)]
    sudo = parse_cve5(record("CVE-2025-32463"))
    assert sudo.cpe_matches and all(m.criteria.startswith("cpe:2.3:a:sudo_project:sudo") for m in sudo.cpe_matches)


def test_malformed_records_name_the_record() -> None:
    bad = record("CVE-2024-2961")
    bad["containers"]["cna"]["affected"][0]["versions"] = [{"version": "2.39"}]  # no status
    with pytest.raises(VulnRecordError, match=r"^CVE-2024-2961: .*needs a version string and a status") as e:
        parse_cve5(bad)
    assert e.value.record_id == "CVE-2024-2961"
    with pytest.raises(VulnRecordError, match=r"cveMetadata\.cveId is missing"):
        parse_cve5({"dataType": "CVE_RECORD"})
    rejected = {"dataType": "CVE_RECORD", "dataVersion": "5.1", "cveMetadata": {"cveId": "CVE-2020-0001", "state": "REJECTED"}}
    assert parse_cve5(rejected).state == "REJECTED"
