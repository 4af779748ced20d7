"""The feed fetcher against a real local HTTP server (http.server in a thread), serving the real CISA KEV catalogue.

The server speaks the parts of HTTP the fetcher relies on: ETag / Last-Modified, 304 on If-None-Match, byte ranges
with If-Range; and it can be told to fail (HTTP 500), to cut a download short, or to ignore ranges.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bulkhead.cra import attribution
from bulkhead.cra.feed_errors import FeedError
from bulkhead.cra.feed_sources import CISA_KEV, DEBIAN_TRACKER, FIRST_EPSS, SOURCES
from bulkhead.cra.feed_state import load_state
from bulkhead.cra.feeds import FeedSource, feed_status, fetch, import_file, parse_checksum
from bulkhead.cra.kev import load_kev
from tests.conftest import SHARED

KEV = SHARED / "cve" / "kev" / "known_exploited_vulnerabilities.json"
T0 = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)


def kev_versions() -> tuple[bytes, bytes]:
    """v1: the real catalogue (1404 entries); v2: the same with its newest entry dropped (1403), as a changed feed."""
    if not KEV.is_file():
        pytest.skip(f"test data not found at {KEV}")
    v1 = KEV.read_bytes()
    doc = json.loads(v1)
    doc["vulnerabilities"] = doc["vulnerabilities"][1:]
    doc["count"] = len(doc["vulnerabilities"])
    return v1, json.dumps(doc, indent=4).encode()


class Feed:
    """What the test server serves, and what it saw."""

    def __init__(self) -> None:
        self.body = b""
        self.etag: str | None = '"v1"'
        self.last_modified = "Tue, 01 Dec 2026 05:00:00 GMT"
        self.status = 200  # 500 to fail
        self.cut_at: int | None = None  # send this many bytes of a full-length body, then drop the connection
        self.ranges = True
        self.checksum: str | None = None
        self.requests: list[dict[str, str]] = []
        self.sent = 0  # body bytes sent, over all requests

    def serve(self, body: bytes, etag: str | None) -> None:
        self.body, self.etag = body, etag


def make_handler(feed: Feed) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/feed.sha256":
                self._send(200, (feed.checksum or "").encode() + b"  feed.json\n", {})
                return
            if self.path == "/current":  # like EPSS's "current" file: a redirect to the dated one
                self._send(302, b"", {"Location": "/feed-2025-08-25.csv.gz"})
                return
            feed.requests.append(dict(self.headers.items()))
            if feed.status != 200:
                self._send(feed.status, b"internal error", {})
                return
            validators = {"Last-Modified": feed.last_modified} | ({"ETag": feed.etag} if feed.etag else {})
            inm = self.headers.get("If-None-Match")
            ims = self.headers.get("If-Modified-Since")
            if (inm is not None and feed.etag is not None and inm == feed.etag) or (
                feed.etag is None and ims == feed.last_modified
            ):
                self._send(304, b"", validators)
                return
            body, status, extra = feed.body, 200, dict(validators)
            rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
            if feed.ranges and rng and if_range in (feed.etag, feed.last_modified):
                start = int(rng.removeprefix("bytes=").rstrip("-"))
                if start >= len(body):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                    return
                status, body = 206, body[start:]
                extra["Content-Range"] = f"bytes {start}-{len(feed.body) - 1}/{len(feed.body)}"
            self._send(status, body, extra)

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status == 304:
                return
            if feed.cut_at is not None and status in (200, 206):
                self.wfile.write(body[: feed.cut_at])
                feed.sent += feed.cut_at
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)
            feed.sent += len(body)

    return Handler


@pytest.fixture
def feed() -> Iterator[tuple[Feed, str]]:
    f = Feed()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(f))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def kev_source(base: str, **kw: Any) -> FeedSource:
    return dataclasses.replace(CISA_KEV, url=f"{base}/feed.json", **kw)


def test_first_fetch_stores_the_feed_and_its_state(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    v1, _ = kev_versions()
    f.serve(v1, '"v1"')
    state = fetch(kev_source(base), tmp_path, now=T0)
    assert state.ok and state.last_error is None
    assert (state.records, state.size, state.etag, state.origin) == (1404, len(v1), '"v1"', "http")
    assert state.last_success == state.last_changed == state.last_attempt == T0
    assert (tmp_path / "cisa-kev.json").read_bytes() == v1
    assert not (tmp_path / "cisa-kev.json.part").exists()
    assert load_state(tmp_path, "cisa-kev") == state  # persisted next to the data
    assert state.sha256 == hashlib.sha256(v1).hexdigest()


def test_etag_304_leaves_the_data_untouched_and_confirms_it_current(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    v1, _ = kev_versions()
    f.serve(v1, '"v1"')
    src = kev_source(base)
    fetch(src, tmp_path, now=T0)
    inode = (tmp_path / "cisa-kev.json").stat().st_ino
    sent = f.sent
    later = T0 + dt.timedelta(hours=1)
    state = fetch(src, tmp_path, now=later)
    assert f.requests[-1]["If-None-Match"] == '"v1"'
    assert f.requests[-1]["If-Modified-Since"] == f.last_modified
    assert f.sent == sent  # 304: no body
    assert (tmp_path / "cisa-kev.json").stat().st_ino == inode
    assert (state.last_success, state.last_changed, state.records) == (later, T0, 1404)
    assert state.age(later + dt.timedelta(minutes=5)) == dt.timedelta(minutes=5)


def test_last_modified_alone_gives_a_304_like_the_debian_tracker(feed: tuple[Feed, str], tmp_path: Path) -> None:
    """The tracker's own service sends Last-Modified and no ETag; the real tracker excerpt is served."""
    f, base = feed
    excerpt = SHARED / "debian-security" / "tracker-json" / "vunnel-debian.json"
    if not excerpt.is_file():
        pytest.skip(f"test data not found at {excerpt}")
    f.serve(excerpt.read_bytes(), None)
    src = dataclasses.replace(DEBIAN_TRACKER, url=f"{base}/tracker/data/json")
    first = fetch(src, tmp_path, now=T0)
    assert (first.ok, first.records, first.etag, first.last_modified) == (True, 7, None, f.last_modified)
    sent = f.sent
    again = fetch(src, tmp_path, now=T0 + dt.timedelta(days=1))
    assert "If-None-Match" not in f.requests[-1] and f.requests[-1]["If-Modified-Since"] == f.last_modified
    assert f.sent == sent and again.ok and again.last_success == T0 + dt.timedelta(days=1)


def test_epss_redirect_and_gzip(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    f.serve(gzip.compress((Path(__file__).parent / "data" / "epss-excerpt.csv").read_bytes()), '"e1"')
    state = fetch(dataclasses.replace(FIRST_EPSS, url=f"{base}/current"), tmp_path, now=T0)
    assert (state.ok, state.records) == (True, 5), state.last_error
    assert (tmp_path / "first-epss.csv.gz").read_bytes()[:2] == b"\x1f\x8b"  # stored as published


def test_a_changed_feed_replaces_the_copy(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    v1, v2 = kev_versions()
    f.serve(v1, '"v1"')
    src = kev_source(base)
    fetch(src, tmp_path, now=T0)
    f.serve(v2, '"v2"')
    later = T0 + dt.timedelta(days=1)
    state = fetch(src, tmp_path, now=later)
    assert (state.records, state.etag, state.last_changed) == (1403, '"v2"', later)
    assert len(load_kev(tmp_path / "cisa-kev.json")) == 1403


def test_a_truncated_download_keeps_the_old_copy_and_the_next_fetch_resumes_with_range(
    feed: tuple[Feed, str], tmp_path: Path
) -> None:
    f, base = feed
    v1, v2 = kev_versions()
    f.serve(v1, '"v1"')
    src = kev_source(base)
    fetch(src, tmp_path, now=T0)

    f.serve(v2, '"v2"')
    f.cut_at = 300_000
    cut = fetch(src, tmp_path, now=T0 + dt.timedelta(hours=1))
    assert not cut.ok
    assert "the last good copy is kept and the next fetch resumes" in (cut.last_error or "")
    assert (tmp_path / "cisa-kev.json").read_bytes() == v1  # untouched
    assert (cut.records, cut.etag, cut.last_success) == (1404, '"v1"', T0)
    assert (tmp_path / "cisa-kev.json.part").stat().st_size == 300_000

    f.cut_at = None
    sent = f.sent
    done = fetch(src, tmp_path, now=T0 + dt.timedelta(hours=2))
    assert done.ok, done.last_error
    assert f.requests[-1]["Range"] == "bytes=300000-"
    assert f.requests[-1]["If-Range"] == '"v2"'
    assert f.sent - sent == len(v2) - 300_000  # only the rest came over the wire
    assert (tmp_path / "cisa-kev.json").read_bytes() == v2
    assert (done.records, done.etag, done.partial) == (1403, '"v2"', None)


def test_a_resume_after_the_feed_changed_again_starts_over(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    v1, v2 = kev_versions()
    f.serve(v2, '"v2"')
    f.cut_at = 1000
    src = kev_source(base)
    fetch(src, tmp_path, now=T0)
    assert not (tmp_path / "cisa-kev.json").exists()  # nothing good yet: nothing installed
    f.cut_at = None
    f.serve(v1, '"v3"')  # If-Range "v2" no longer matches: the server sends all of the new version
    state = fetch(src, tmp_path, now=T0)
    assert state.ok and (tmp_path / "cisa-kev.json").read_bytes() == v1


def test_a_server_without_ranges_still_completes(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    _, v2 = kev_versions()
    f.serve(v2, '"v2"')
    f.cut_at, f.ranges = 5000, False
    src = kev_source(base)
    fetch(src, tmp_path, now=T0)
    f.cut_at = None
    state = fetch(src, tmp_path, now=T0)
    assert state.ok and (tmp_path / "cisa-kev.json").read_bytes() == v2


def test_weak_etag_resumes_on_last_modified(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    _, v2 = kev_versions()
    f.serve(v2, 'W/"weak"')
    f.cut_at = 4096
    src = kev_source(base)
    fetch(src, tmp_path, now=T0)
    f.cut_at = None
    assert fetch(src, tmp_path, now=T0).ok
    assert f.requests[-1]["If-Range"] == f.last_modified


def test_a_failing_feed_keeps_the_last_good_data_and_says_why(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    v1, _ = kev_versions()
    f.serve(v1, '"v1"')
    src = kev_source(base)
    fetch(src, tmp_path, now=T0)
    f.status = 500
    later = T0 + dt.timedelta(hours=3)
    state = fetch(src, tmp_path, now=later)
    assert not state.ok
    assert "answered HTTP 500" in (state.last_error or "") and "the last good copy is kept" in (state.last_error or "")
    assert (state.last_attempt, state.last_success, state.records) == (later, T0, 1404)
    assert state.age(later) == dt.timedelta(hours=3)
    assert load_state(tmp_path, "cisa-kev").last_error == state.last_error
    assert len(load_kev(tmp_path / "cisa-kev.json")) == 1404
    shown = feed_status(src, tmp_path, now=later)
    assert (shown["ok"], shown["has_data"], shown["age_seconds"], shown["records"]) == (False, True, 10800, 1404)
    assert shown["stale"]  # KEV is hourly: 3 h without a good fetch is stale
    assert shown["last_error"] == state.last_error and shown["attribution"] == attribution.CISA_KEV
    assert not feed_status(src, tmp_path, now=T0 + dt.timedelta(hours=2))["stale"]
    f.status = 200  # recovered: the error clears
    assert fetch(src, tmp_path, now=later).last_error is None


def test_connection_refused_keeps_the_last_good_data(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    v1, _ = kev_versions()
    f.serve(v1, '"v1"')
    fetch(kev_source(base), tmp_path, now=T0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    dead = dataclasses.replace(CISA_KEV, url=f"http://127.0.0.1:{port}/feed.json")
    state = fetch(dead, tmp_path, now=T0 + dt.timedelta(hours=1))
    assert "ConnectError" in (state.last_error or "")
    assert (state.records, state.last_success) == (1404, T0)
    assert (tmp_path / "cisa-kev.json").read_bytes() == v1


def test_a_body_that_is_not_the_feed_is_refused(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    v1, _ = kev_versions()
    f.serve(v1, '"v1"')
    src = kev_source(base)
    fetch(src, tmp_path, now=T0)
    f.serve(b"<html>Service temporarily unavailable</html>", '"maint"')
    state = fetch(src, tmp_path, now=T0)
    assert "not a valid cisa-kev feed: not a CISA KEV catalogue" in (state.last_error or "")
    assert (tmp_path / "cisa-kev.json").read_bytes() == v1
    assert state.etag == '"v1"'  # the refused body's validator is not kept: the next fetch asks again
    assert not (tmp_path / "cisa-kev.json.part").exists()


def test_a_cut_gzip_file_is_refused_not_crashed_on(tmp_path: Path) -> None:
    whole = gzip.compress((Path(__file__).parent / "data" / "epss-excerpt.csv").read_bytes())
    cut = tmp_path / "epss.csv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FeedError, match="not a valid first-epss feed: EOFError"):
        import_file(FIRST_EPSS, tmp_path / "feeds", cut, now=T0)
    assert not (tmp_path / "feeds" / "first-epss.csv.gz").exists()


def test_published_checksum_is_checked(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    v1, v2 = kev_versions()
    f.serve(v1, '"v1"')
    src = kev_source(base, checksum_url=f"{base}/feed.sha256")
    f.checksum = hashlib.sha256(v1).hexdigest()
    assert fetch(src, tmp_path, now=T0).ok
    f.serve(v2, '"v2"')  # the checksum still describes v1
    state = fetch(src, tmp_path, now=T0)
    assert "checksum mismatch" in (state.last_error or "")
    assert (tmp_path / "cisa-kev.json").read_bytes() == v1


def test_checksum_of_the_decompressed_content(feed: tuple[Feed, str], tmp_path: Path) -> None:
    f, base = feed
    v1, _ = kev_versions()
    f.serve(gzip.compress(v1), '"gz"')
    f.checksum = hashlib.sha256(v1).hexdigest().upper()  # NVD .meta files write it upper-case
    src = kev_source(base, checksum_url=f"{base}/feed.sha256", checksum_of_decompressed=True)
    state = fetch(src, tmp_path, now=T0)
    assert state.ok, state.last_error
    assert state.records == 1404  # the parsers read the stored gzip


def test_parse_checksum_formats() -> None:
    h = "a" * 64
    assert parse_checksum(f"{h}  feed.json\n") == h
    meta = f"lastModifiedDate:2026-12-01T03:00:00-05:00\r\nsize:1\r\nsha256:{h.upper()}\r\n"
    assert parse_checksum(meta) == h
    with pytest.raises(FeedError, match="no sha256"):
        parse_checksum("<html>")


def test_import_from_a_file_for_air_gapped_sites(tmp_path: Path) -> None:
    v1, v2 = kev_versions()
    data = tmp_path / "feeds"
    brought = tmp_path / "usb" / "known_exploited_vulnerabilities.json"
    brought.parent.mkdir()
    brought.write_bytes(v2)
    state = import_file(CISA_KEV, data, brought, expected_sha256=hashlib.sha256(v2).hexdigest(), now=T0)
    assert (state.ok, state.records, state.origin, state.etag) == (
        True,
        1403,
        "import known_exploited_vulnerabilities.json",
        None,
    )

    bad = tmp_path / "usb" / "truncated.json"
    bad.write_bytes(v1[: len(v1) // 2])
    with pytest.raises(FeedError, match=r"import of .* refused: the file is not a valid cisa-kev feed"):
        import_file(CISA_KEV, data, bad, now=T0 + dt.timedelta(days=1))
    with pytest.raises(FeedError, match="checksum mismatch"):
        import_file(CISA_KEV, data, brought, expected_sha256="0" * 64)
    after = load_state(data, "cisa-kev")
    assert (after.records, after.last_success) == (1403, T0) and "checksum mismatch" in (after.last_error or "")
    assert len(load_kev(data / "cisa-kev.json")) == 1403
    assert [p.name for p in data.iterdir() if p.name.endswith(".tmp")] == []


def test_status_of_a_feed_never_fetched(tmp_path: Path) -> None:
    shown = feed_status(FIRST_EPSS, tmp_path, now=T0)
    assert (shown["has_data"], shown["ok"], shown["stale"], shown["age_seconds"], shown["records"]) == (
        False,
        False,
        True,
        None,
        None,
    )


def test_sources_carry_their_attribution() -> None:
    assert SOURCES["debian-tracker"].attribution == attribution.DEBIAN
    assert FIRST_EPSS.attribution == attribution.FIRST_EPSS
    assert CISA_KEV.interval == dt.timedelta(hours=1)
    assert attribution.attribution("nvd") == "This product uses the NVD API but is not endorsed or certified by the NVD."
    assert "MITRE" in (attribution.attribution("cve5") or "")
