"""The FIRST EPSS CSV parser (tests/cra/data/epss-excerpt.csv, see the README there): header line, gzip, bad rows."""

from __future__ import annotations

import datetime as dt
import gzip
import io
from pathlib import Path

import pytest

from bulkhead.cra.epss import EpssScore, load_epss, read_epss
from bulkhead.cra.feed_errors import FeedFormatError

EXCERPT = Path(__file__).parent / "data" / "epss-excerpt.csv"


def test_scores_and_the_model_header_are_read() -> None:
    s = load_epss(EXCERPT)
    assert (s.model_version, s.score_date) == ("v2025.03.14", dt.datetime(2025, 8, 25, 12, 55, tzinfo=dt.UTC))
    assert len(s) == 5
    assert s.get("CVE-2024-1086") == EpssScore(0.83371, 0.99235)
    assert s.get("CVE-1999-0001") is None


def test_gzip_is_accepted(tmp_path: Path) -> None:
    gz = tmp_path / "epss_scores-2025-08-25.csv.gz"
    gz.write_bytes(gzip.compress(EXCERPT.read_bytes()))
    assert load_epss(gz).get("CVE-2024-3094") == EpssScore(0.84581, 0.9931)


def test_files_without_the_comment_line_are_read() -> None:
    body = EXCERPT.read_bytes().split(b"\n", 1)[1]
    s = read_epss(io.BytesIO(body))
    assert (s.model_version, s.score_date, len(s)) == (None, None, 5)


def test_only_the_wanted_cves_are_kept() -> None:
    s = load_epss(EXCERPT, only={"CVE-2024-6387", "CVE-2000-0001"})
    assert list(s.scores) == ["CVE-2024-6387"]


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (b"cve,score\nCVE-2024-1,0.1\n", "line 1: expected the header"),
        (b"#model_version:v1,score_date:2025-08-25\ncve,epss,percentile\nCVE-2024-1,abc,0.5\n", "line 3: epss 'abc'"),
        (b"cve,epss,percentile\nCVE-2024-1,0.5,1.5\n", "line 2: percentile 1.5 is outside"),
        (b"cve,epss,percentile\nGHSA-1,0.5,0.5\n", "line 2: expected 'CVE-"),
        (b"#model_version:v1,score_date:soon\ncve,epss,percentile\n", "score_date is not a timestamp"),
    ],
)
def test_bad_files_are_refused(doc: bytes, says: str) -> None:
    with pytest.raises(FeedFormatError, match="not a FIRST EPSS scores CSV") as e:
        read_epss(io.BytesIO(doc))
    assert says in str(e.value)
