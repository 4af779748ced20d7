"""NVD API 2.0 parser on the real responses of shared/testdata/cve/nvd."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bulkhead.cra.errors import VulnRecordError
from bulkhead.cra.model import Severity
from bulkhead.cra.nvd import parse_nvd_cve, parse_nvd_response
from bulkhead.cra.vulnrecord import CpeMatch
from tests.conftest import SHARED

NVD = SHARED / "cve" / "nvd"
pytestmark = pytest.mark.skipif(not NVD.is_dir(), reason=f"shared testdata not found: {NVD}")


def load(name: str) -> Any:
    return json.loads((NVD / name).read_text())


def test_api_response_with_exact_versions() -> None:
    (xz,) = parse_nvd_response(load("CVE-2024-3094.nvd-api-2.0.json"))
    assert xz.id == "CVE-2024-3094" and xz.source == "nvd"
    assert [m.criteria for m in xz.cpe_matches] == [
        "cpe:2.3:a:tukaani:xz:5.6.0:*:*:*:*:*:*:*",
        "cpe:2.3:a:tukaani:xz:5.6.1:*:*:*:*:*:*:*",
    ]
    assert xz.best_metric() is not None and xz.best_metric().source == "nvd:nvd@nist.gov (Primary)"  # type: ignore[union-attr]
    assert xz.severity is Severity.CRITICAL


def test_fkie_bare_cve_with_range_and_primary_metric_first() -> None:
    expat = parse_nvd_cve(load("CVE-2024-45490.fkie-nvd-json-data-feeds.json"))
    assert expat.cpe_matches == (
        CpeMatch("cpe:2.3:a:libexpat_project:libexpat:*:*:*:*:*:*:*:*", True, version_end_excluding="2.6.3"),
    )
    # two CVSS 3.1 metrics: NVD's Primary (7.5 high) is shown, not the Secondary (9.8 critical)
    assert sorted(m.base_score for m in expat.metrics) == [7.5, 9.8]
    assert expat.severity is Severity.HIGH


def test_malformed_items_name_the_record() -> None:
    doc = load("CVE-2024-45490.fkie-nvd-json-data-feeds.json")
    doc["configurations"][0]["nodes"][0]["cpeMatch"][0].pop("criteria")
    with pytest.raises(VulnRecordError, match=r"^CVE-2024-45490: configurations"):
        parse_nvd_cve(doc)
    with pytest.raises(VulnRecordError, match="vulnerabilities is missing"):
        parse_nvd_response({"resultsPerPage": 0})
