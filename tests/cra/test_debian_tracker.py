"""The Debian Security Tracker JSON parser: real excerpts (shared/testdata), streaming over chunk boundaries, bad input."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from bulkhead.cra import debian_tracker
from bulkhead.cra.debian_tracker import ReleaseEntry, TrackerStatus, iter_packages, load_tracker, read_tracker
from bulkhead.cra.feed_errors import FeedFormatError
from tests.conftest import SHARED

TRACKER_JSON = SHARED / "debian-security" / "tracker-json"
EDGE = Path(__file__).parent / "data" / "debian-tracker-edge.json"


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"test data not found at {path} (shared/testdata beside the repository)")
    return path


def test_vunnel_excerpt_parses_every_issue_including_the_one_without_releases() -> None:
    t = load_tracker(need(TRACKER_JSON / "vunnel-debian.json"))
    assert len(t) == 7  # the README's count
    assert sorted(t.packages()) == ["backupninja", "chromium", "chromium-browser", "prototypejs", "sope", "txt2man"]
    assert t.issues("chromium-browser")["CVE-2022-0358"].releases == {}  # "releases": [] upstream
    sope = t.issues("sope")["CVE-2025-53603"]
    assert (sope.debianbug, sope.scope) == (1108798, "local")
    assert sope.releases["bookworm"] == ReleaseEntry(TrackerStatus.RESOLVED, "5.8.0-1+deb12u1", "not yet assigned")
    chromium = t.issues("chromium")["CVE-2022-0456"].releases
    assert chromium["buster"] == ReleaseEntry(TrackerStatus.OPEN, None, "end-of-life")
    assert t.issues("prototypejs")["CVE-2008-7220"].releases["sid"].urgency == "high**"


def test_osv_mock_excerpt_parses_open_and_resolved() -> None:
    t = load_tracker(need(TRACKER_JSON / "osv.dev-debian_security_tracker_mock.json"))
    rel = t.issues("apparmor")["CVE-2016-1585"].releases
    assert rel["bookworm"].status is TrackerStatus.OPEN and rel["bookworm"].fixed_version is None
    assert rel["trixie"] == ReleaseEntry(TrackerStatus.RESOLVED, "3.0.12-1", "unimportant")
    assert t.issues("apparmor")["CVE-2014-1424"].releases["buster"].fixed_version == "0"


def test_edge_fixture_keeps_the_no_dsa_notes_and_the_point_release_flag() -> None:
    t = load_tracker(EDGE)
    assert t.issues("openssl")["CVE-2024-5535"].releases["bullseye"] == ReleaseEntry(
        TrackerStatus.OPEN, None, "not yet assigned", nodsa="Minor issue", nodsa_reason="postponed"
    )
    assert t.issues("busybox")["CVE-2022-48174"].releases["bookworm"].nodsa_reason == ""
    assert t.issues("curl")["CVE-2024-2398"].releases["bookworm"].next_point_update
    assert t.issues("curl")["CVE-2024-7264"].releases["bookworm"].status is TrackerStatus.UNDETERMINED


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_streaming_reads_the_same_at_every_chunk_boundary(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """The reader sees the document a chunk at a time; keys and values cut anywhere must still parse the same."""
    monkeypatch.setattr(debian_tracker, "_CHUNK", chunk)
    for path in (EDGE, need(TRACKER_JSON / "vunnel-debian.json")):
        raw = path.read_bytes()
        assert dict(iter_packages(io.BytesIO(raw))) == json.loads(raw)


def test_only_the_wanted_releases_are_kept_and_identical_entries_are_shared() -> None:
    t = load_tracker(need(TRACKER_JSON / "osv.dev-debian_security_tracker_mock.json"), releases=["bookworm"])
    issues = t.issues("apparmor")
    assert all(set(i.releases) == {"bookworm"} for i in issues.values())
    full = load_tracker(TRACKER_JSON / "osv.dev-debian_security_tracker_mock.json")
    r = full.issues("apparmor")["CVE-2014-1424"].releases
    assert r["bullseye"] is r["buster"] is r["sid"]  # all resolved/"0"/unimportant: one object in memory
    assert r["bookworm"] is not full.issues("apparmor")["CVE-2016-1585"].releases["bookworm"]


def test_a_release_filter_drops_issues_without_that_release() -> None:
    t = load_tracker(EDGE, releases=["sid"])
    assert list(t.packages()) == ["xz-utils"]


def test_gzip_compressed_file_is_read(tmp_path: Path) -> None:
    gz = tmp_path / "json.gz"
    gz.write_bytes(gzip.compress(EDGE.read_bytes()))
    assert len(load_tracker(gz)) == len(load_tracker(EDGE)) == 8


def test_text_stream_is_read() -> None:
    assert len(read_tracker(io.StringIO(EDGE.read_text()))) == 8


def test_empty_document_is_an_empty_tracker() -> None:
    assert len(read_tracker(io.BytesIO(b" {} \n"))) == 0


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (b"[]", "opening '{'"),
        (b'{"openssl": []}', "not an object"),
        (b'{"openssl": {"CVE-1": {"releases": {"bookworm": {"status": "weird"}}}}}', "unknown status 'weird'"),
        (b'{"openssl": {"CVE-1": {"releases": {"bookworm": {"status": "open"}}}}', "expected ',' or '}'"),
        (b'{"openssl": {"CVE-1": {"releases": {"bookworm": {"status": "open"', "at character"),
        (b'{"a": {}} x', "trailing data"),
        (b"", "opening '{'"),
    ],
)
def test_malformed_or_truncated_documents_are_refused_with_a_clear_message(doc: bytes, says: str) -> None:
    with pytest.raises(FeedFormatError, match="not a Debian Security Tracker JSON document") as e:
        read_tracker(io.BytesIO(doc))
    assert says in str(e.value)


def test_the_callers_stream_stays_open() -> None:
    stream = io.BytesIO(EDGE.read_bytes())
    read_tracker(stream)
    assert not stream.closed
