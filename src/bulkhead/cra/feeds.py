"""Fetch a vulnerability feed over HTTP, or import it from a file, never losing the last good copy.

- **Conditional GET**: the held copy's ETag and Last-Modified go out as If-None-Match / If-Modified-Since; a 304
  means unchanged (the data is confirmed current, nothing is written).
- **Atomic**: the body goes to ``<file>.part``; only a complete, checked and parsed download is renamed over
  ``<file>``. A download that is cut (connection lost, fewer bytes than Content-Length), an HTTP error, a
  checksum mismatch or a body that does not parse leaves the last good copy in place and says why in the state.
- **Resumable**: a cut download is continued next time with ``Range: bytes=N-`` and ``If-Range`` (the strong ETag,
  else Last-Modified, of the partial body); a server that ignores ranges or has changed the file answers 200 and
  the download starts over.
- **Checksum**: where a feed publishes one (``FeedSource.checksum_url``: a ``sha256sum`` line or an NVD-style
  ``.meta`` with ``sha256:``), or given by the caller.
- **Air-gapped sites**: :func:`import_file` takes a copy brought in by hand through the same checks.
- **State**: :mod:`.feed_state`, next to the data. Concurrent fetches of one feed are serialised by a lock file.

Transfer encodings are refused (``Accept-Encoding: identity``) so that byte ranges, lengths and checksums are
those of the stored file; feeds published compressed (EPSS ``.csv.gz``) are stored compressed and their parsers
read gzip.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .feed_errors import FeedError, FeedFormatError, FeedHttpError
from .feed_state import FeedState, PartialDownload, load_state, save_state
from .feedfile import open_feed_file

__all__ = [
    "FeedSource",
    "download",
    "feed_status",
    "fetch",
    "import_file",
    "locked",
    "make_client",
    "parse_checksum",
    "sha256_file",
]

_SHA256 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class FeedSource:
    """One feed: where it is fetched from, the file it is kept in, and how a download is checked."""

    name: str  # "debian-tracker"; also the state file's name
    url: str
    filename: str  # the data file in the feed directory
    count_records: Callable[[Path], int]  # parses the file and counts its records; raises FeedFormatError if it is not the feed
    attribution: str = ""
    checksum_url: str | None = None  # a published sha256 of the file
    checksum_of_decompressed: bool = False  # the published sha256 is of the gunzipped content (NVD .meta files)
    interval: dt.timedelta = dt.timedelta(days=1)  # how often the periodic job should fetch it
    # Feeds kept from several files (CVE list bulk + deltas, OSV per ecosystem) bring their own fetch and import:
    # `fetch` and `import_file` hand over to them. `url` is then the base the files are found under.
    sync: Callable[[FeedSource, Path, httpx.Client | None, dt.datetime | None], FeedState] | None = None
    importer: Callable[[FeedSource, Path, Path, str | None, dt.datetime | None], FeedState] | None = None
    mirror_path: str | None = None  # under BULKHEAD_FEED_MIRROR: the URL is <mirror>/<mirror_path> (default: filename)
    parts: tuple[str, ...] = ()  # the files a multi-file feed is made of (OSV: the ecosystems)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_client() -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(30.0, read=120.0),
        follow_redirects=True,  # the EPSS "current" file is a redirect to the dated one
        headers={"User-Agent": "bulkhead-vulnerability-feeds"},
    )


def parse_checksum(text: str) -> str:
    """The sha256 in a checksum document (``sha256sum`` output, an NVD ``.meta`` ``sha256:`` line, or a bare hash)."""
    m = _SHA256.search(text)
    if m is None:
        raise FeedError(f"no sha256 found in the checksum document (starts {text[:60]!r})")
    return m.group(0).lower()


def _sha256(path: Path, decompressed: bool) -> str:
    h = hashlib.sha256()
    with open_feed_file(path) if decompressed else path.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    return _sha256(path, decompressed=False)


@contextlib.contextmanager
def locked(directory: Path, name: str) -> Iterator[None]:
    with (directory / f".{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another fetch of the same feed finishes first; ours is then a cheap 304
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_and_install(
    source: FeedSource, directory: Path, candidate: Path, state: FeedState, expected_sha256: str | None, now: dt.datetime
) -> None:
    """Checksum and parse ``candidate``; then rename it over the data file and record it in ``state``."""
    digest = _sha256(candidate, decompressed=False)
    if expected_sha256 is not None:
        got = digest if not source.checksum_of_decompressed else _sha256(candidate, decompressed=True)
        if got != expected_sha256.lower():
            candidate.unlink(missing_ok=True)
            raise FeedError(f"checksum mismatch: sha256 {got}, the feed publishes {expected_sha256.lower()}")
    try:
        records = source.count_records(candidate)
    except Exception as e:  # a parser's FeedFormatError, or what a cut gzip or binary junk raises on the way (EOFError, ...)
        candidate.unlink(missing_ok=True)
        why = str(e) if isinstance(e, FeedFormatError) else f"{type(e).__name__}: {e}"
        raise FeedError(f"the file is not a valid {source.name} feed: {why}") from None
    size = candidate.stat().st_size
    os.replace(candidate, directory / source.filename)
    if state.sha256 != digest:
        state.last_changed = now
    state.records, state.size, state.sha256 = records, size, digest
    state.last_success, state.last_error = now, None


def _content_length(resp: httpx.Response) -> int | None:
    raw = resp.headers.get("Content-Length")
    return int(raw) if raw and raw.isdigit() else None


def _resumes(state: FeedState) -> str:
    p = state.partial
    return " and the next fetch resumes" if p is not None and p.validator else ""


def download(source: FeedSource, directory: Path, state: FeedState, client: httpx.Client, now: dt.datetime) -> bool:
    """One conditional, resumable download into ``directory`` (no lock, no state saved: the caller's job).

    True when a new body was checked and installed, False on a 304. Raises :class:`FeedError` (an HTTP error
    status is a :class:`FeedHttpError` with its ``status``) or httpx's errors."""
    data = directory / source.filename
    part = directory / (source.filename + ".part")
    headers = {"Accept-Encoding": "identity"}
    if data.exists():
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
    offset = 0
    p = state.partial
    if p is not None and p.url == source.url and p.validator and part.exists():
        offset = part.stat().st_size
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = p.validator
    else:
        part.unlink(missing_ok=True)
        state.partial = None

    with client.stream("GET", source.url, headers=headers) as resp:
        if resp.status_code == 304 and data.exists():
            part.unlink(missing_ok=True)  # the partial body was of another version
            state.partial = None
            state.last_success, state.last_error = now, None
            return False
        if resp.status_code in (206, 416) and "Range" in headers:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if resp.status_code == 416 or m is None or int(m.group(1)) != offset:
                part.unlink(missing_ok=True)  # the server has no such range of this version: start over
                state.partial = None
                raise FeedError(f"{source.url} could not continue the unfinished download; the next fetch starts over")
            mode = "ab"
        elif resp.status_code == 200:
            mode, offset = "wb", 0
        else:
            raise FeedHttpError(resp.status_code, f"{source.url} answered HTTP {resp.status_code} {resp.reason_phrase}")
        etag = resp.headers.get("ETag")
        last_modified = resp.headers.get("Last-Modified")
        strong = etag if etag and not etag.startswith("W/") else None
        if resp.status_code == 200 or state.partial is None:
            state.partial = PartialDownload(source.url, strong or last_modified, etag, last_modified)
        partial = state.partial
        expected = _content_length(resp)
        written = 0
        with part.open(mode) as f:
            try:
                for block in resp.iter_raw():
                    f.write(block)
                    written += len(block)
            finally:
                f.flush()
                os.fsync(f.fileno())
        if expected is not None and written != expected:
            raise FeedError(f"the download was cut short: {written} of {expected} bytes{_resumes(state)}")

    state.partial = None  # complete: whatever the checks say, it is not resumed
    expected_sha = None
    if source.checksum_url:
        r = client.get(source.checksum_url)
        if r.status_code != 200:
            part.unlink(missing_ok=True)
            raise FeedError(f"the published checksum {source.checksum_url} answered HTTP {r.status_code}")
        expected_sha = parse_checksum(r.text)
    _check_and_install(source, directory, part, state, expected_sha, now)
    state.etag, state.last_modified, state.origin, state.url = partial.etag, partial.last_modified, "http", source.url
    return True


def fetch(source: FeedSource, directory: Path, client: httpx.Client | None = None, now: dt.datetime | None = None) -> FeedState:
    """Bring the feed up to date; never raises for feed trouble: the returned (and saved) state says what happened."""
    if source.sync is not None:
        return source.sync(source, directory, client, now)
    directory.mkdir(parents=True, exist_ok=True)
    now = now or _now()
    own = client is None
    http = client or make_client()
    try:
        with locked(directory, source.name):
            state = load_state(directory, source.name)
            state.last_attempt, state.url = now, source.url
            try:
                download(source, directory, state, http, now)
            except FeedError as e:
                state.last_error = f"{e}; the last good copy is kept"
            except httpx.HTTPError as e:
                state.last_error = f"fetching {source.url} failed ({type(e).__name__}: {e}); the last good copy is kept"
                state.last_error += _resumes(state)
            except OSError as e:
                state.last_error = f"writing {source.name} to {directory} failed ({e}); the last good copy is kept"
            save_state(directory, state)
            return state
    finally:
        if own:
            http.close()


def import_file(
    source: FeedSource, directory: Path, path: Path, expected_sha256: str | None = None, now: dt.datetime | None = None
) -> FeedState:
    """Take a copy of the feed brought in by hand (air-gapped sites): checked and parsed like a download.

    Raises :class:`FeedError` when the file is refused (the state records why; the last good copy is kept)."""
    if source.importer is not None:
        return source.importer(source, directory, path, expected_sha256, now)
    directory.mkdir(parents=True, exist_ok=True)
    now = now or _now()
    with locked(directory, source.name):
        state = load_state(directory, source.name)
        state.last_attempt = now
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{source.name}.import.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                shutil.copyfileobj(src, out, _BLOCK)
                out.flush()
                os.fsync(out.fileno())
            _check_and_install(source, directory, Path(tmp), state, expected_sha256, now)
        except (FeedError, OSError) as e:
            Path(tmp).unlink(missing_ok=True)
            state.last_error = f"import of {path} refused: {e}; the last good copy is kept"
            save_state(directory, state)
            raise FeedError(state.last_error) from None
        # the imported copy has no HTTP validators: the next fetch downloads in full
        state.etag = state.last_modified = None
        state.origin = f"import {path.name}"
        save_state(directory, state)
        return state


def feed_status(source: FeedSource, directory: Path, now: dt.datetime | None = None) -> dict[str, Any]:
    """What the UI and CLI show for a feed: freshness, size, the last error, and the source's notice.

    ``stale`` is true when there is no data or it was last confirmed current more than two intervals ago."""
    now = now or _now()
    state = load_state(directory, source.name)
    age = state.age(now)
    return {
        "name": source.name,
        "url": source.url,
        "has_data": state.has_data,
        "ok": state.ok,
        "stale": age is None or age > 2 * source.interval,
        "age_seconds": None if age is None else int(age.total_seconds()),
        "records": state.records,
        "origin": state.origin,
        "last_attempt": state.last_attempt.isoformat() if state.last_attempt else None,
        "last_success": state.last_success.isoformat() if state.last_success else None,
        "last_changed": state.last_changed.isoformat() if state.last_changed else None,
        "last_error": state.last_error,
        "attribution": source.attribution,
        "detail": state.detail,
    }
