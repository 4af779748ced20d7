"""The CISA KEV catalogue parser on the complete catalogue in shared/testdata/cve/kev (2025.08.25, 1404 entries)."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from pathlib import Path

import pytest

from bulkhead.cra.feed_errors import FeedFormatError
from bulkhead.cra.kev import KevEntry, load_kev, parse_kev, read_kev
from tests.conftest import SHARED

KEV = SHARED / "cve" / "kev" / "known_exploited_vulnerabilities.json"


@pytest.fixture
def kev_doc() -> dict:  # type: ignore[type-arg]
    if not KEV.is_file():
        pytest.skip(f"test data not found at {KEV}")
    return json.loads(KEV.read_bytes())


def test_the_complete_catalogue_is_read() -> None:
    if not KEV.is_file():
        pytest.skip(f"test data not found at {KEV}")
    kev = load_kev(KEV)
    assert (kev.version, len(kev)) == ("2025.08.25", 1404)
    assert kev.released == dt.datetime(2025, 8, 25, 17, 4, 19, 979600, tzinfo=dt.UTC)
    assert sum(e.ransomware_known for e in kev) == 293


def test_kev_marks_the_kernel_cves_of_the_testdata_exploited() -> None:
    if not KEV.is_file():
        pytest.skip(f"test data not found at {KEV}")
    kev = load_kev(KEV)
    assert kev.get("CVE-2024-1086") == KevEntry(
        cve="CVE-2024-1086",
        vendor_project="Linux",
        product="Kernel",
        name="Linux Kernel Use-After-Free Vulnerability",
        date_added=dt.date(2024, 5, 30),
        due_date=dt.date(2024, 6, 20),
        ransomware_known=False,
    )
    assert kev.get("CVE-2024-36971").date_added == dt.date(2024, 8, 7)  # type: ignore[union-attr]
    assert "CVE-2024-3094" not in kev  # the xz backdoor was never in KEV
    assert "CVE-2025-32463" not in kev  # added 2025-09-29, after this snapshot


def test_gzip_copy_is_read(tmp_path: Path) -> None:
    if not KEV.is_file():
        pytest.skip(f"test data not found at {KEV}")
    gz = tmp_path / "kev.json.gz"
    gz.write_bytes(gzip.compress(KEV.read_bytes()))
    assert len(load_kev(gz)) == 1404


def test_a_cut_copy_is_refused(kev_doc: dict) -> None:  # type: ignore[type-arg]
    kev_doc["vulnerabilities"] = kev_doc["vulnerabilities"][:-1]
    with pytest.raises(FeedFormatError, match="'count' says 1404 but the list has 1403"):
        parse_kev(kev_doc)


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda d: d.pop("vulnerabilities"), "missing vulnerabilities"),
        (lambda d: d["vulnerabilities"][3].update(cveID="CVE-24-1"), "entry 3 has no valid cveID"),
        (lambda d: d["vulnerabilities"][0].update(dateAdded="yesterday"), "dateAdded is not a date"),
    ],
)
def test_malformed_catalogues_are_refused(kev_doc: dict, mutate, says: str) -> None:  # type: ignore[no-untyped-def, type-arg]
    mutate(kev_doc)
    with pytest.raises(FeedFormatError, match=says):
        parse_kev(kev_doc)


def test_not_json_is_refused() -> None:
    with pytest.raises(FeedFormatError, match="not a CISA KEV catalogue: not JSON"):
        read_kev(io.BytesIO(b"<html>maintenance</html>"))
