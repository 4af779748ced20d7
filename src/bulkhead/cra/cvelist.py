"""The CVE list feed: CVE JSON 5 records fetched from cvelistV5's release archives, kept up to date with its deltas.

CVEProject/cvelistV5 publishes, as GitHub release assets (paths under ``source.url``, see :data:`LAYOUT`):

- every midnight (UTC) the bulk archive of all records, ``cve_<D>_0000Z/<D>_all_CVEs_at_midnight.zip.zip`` (a zip
  holding ``cves.zip``, one JSON file per record);
- every hour, ``cve_<D>_<HH>00Z/<D>_delta_CVEs_at_<HH>00Z.zip``: every record added or changed since midnight of
  ``D`` (cumulative), under ``deltaCves/``;
- once a day is over, ``cve_<D>_at_end_of_day/<D>_delta_CVEs_at_end_of_day.zip``: every record changed during ``D``.

The held copy (``cvelist-records.gz``) is one line per record, ``<CVE id>\\t<the record as compact JSON>``, gzip:
records are replaced by id without parsing the others, and read back one at a time (:func:`iter_records`). A sync
starts from the held copy's ``as_of`` (in the state's ``detail``): the end-of-day delta of every day since, then
the newest hourly delta of today, each applied onto the held copy. It falls back to the bulk archive when there is
no held copy, when it is older than :data:`MAX_DELTA_AGE`, or when an end-of-day delta is missing (HTTP 404).
Each archive is downloaded with :func:`bulkhead.cra.feeds.download` (conditional GET, ``.part`` + Range resume) into
``cvelist.downloads/``, unpacked with bounds (:mod:`.archive`: a zip bomb is refused), and every record is parsed
(:func:`parse_cve5`) before the new copy replaces the held one; a record the parser rejects is left out and counted
(``detail.skipped``). A refused archive leaves the held copy as it was.

Air-gapped sites import either archive by hand: a bulk archive replaces the held copy, a delta is applied onto it.
The date in the file name, when it has cvelistV5's, sets ``as_of``; otherwise (an upload through the API has no
name) the hour of the newest ``dateUpdated`` among the archive's records does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .archive import ArchiveLimits, iter_members
from .cve5 import parse_cve5
from .errors import VulnRecordError
from .feed_errors import FeedError, FeedFormatError, FeedHttpError
from .feed_state import FeedState, load_state, save_state
from .feeds import FeedSource, download, locked, make_client, sha256_file
from .vulnrecord import VulnRecord

__all__ = ["LAYOUT", "MAX_DELTA_AGE", "import_cvelist", "iter_records", "load_records", "sync_cvelist"]

LAYOUT = {
    "bulk": "cve_{date}_0000Z/{date}_all_CVEs_at_midnight.zip.zip",
    "end_of_day": "cve_{date}_at_end_of_day/{date}_delta_CVEs_at_end_of_day.zip",
    "hourly": "cve_{date}_{hour:02d}00Z/{date}_delta_CVEs_at_{hour:02d}00Z.zip",
}
MAX_DELTA_AGE = dt.timedelta(days=7)  # older than this, the bulk archive is cheaper than a week of deltas
LIMITS = ArchiveLimits()
_HOURLY_TRIES = 3  # today's newest hourly delta may not be published yet: try the hours before it
_CVE_FILE = re.compile(r"(?:^|/)(CVE-\d{4}-\d{4,})\.json$")
_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})_")
_NAMES = (
    (re.compile(r"(\d{4}-\d{2}-\d{2})_all_CVEs_at_midnight"), "bulk"),
    (re.compile(r"(\d{4}-\d{2}-\d{2})_delta_CVEs_at_end_of_day"), "end_of_day"),
    (re.compile(r"(\d{4}-\d{2}-\d{2})_delta_CVEs_at_(\d{2})00Z"), "hourly"),
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


# -- the held copy ----------------------------------------------------------------------------------------------


def iter_records(path: Path) -> Iterator[VulnRecord]:
    """The records of a held copy, one at a time (memory: one record)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            cve, sep, raw = line.partition("\t")
            if not sep:
                raise FeedFormatError(f"not a CVE list copy: line {n} has no tab after the CVE id")
            try:
                yield parse_cve5(json.loads(raw))
            except (ValueError, VulnRecordError) as e:
                raise FeedFormatError(f"not a CVE list copy: line {n} ({cve}): {e}") from None


def load_records(path: Path) -> list[VulnRecord]:
    return list(iter_records(path))


def _count_lines(path: Path) -> int:
    with gzip.open(path, "rb") as f:
        return sum(1 for _ in f)


@dataclass
class _Tally:
    skipped: list[str] = field(default_factory=list)  # ids of the records the parser rejected
    latest: dt.datetime | None = None  # the newest dateUpdated seen

    def see(self, rec: VulnRecord) -> None:
        if rec.updated is not None and (self.latest is None or rec.updated > self.latest):
            self.latest = rec.updated


def _archive_records(archive: Path, tally: _Tally, tmpdir: Path) -> Iterator[tuple[str, str]]:
    """(CVE id, compact JSON) of every record in a cvelistV5 archive that parses; the others' ids go to ``tally``."""
    for name, data in iter_members(archive, ".json", LIMITS, label=archive.name, tmpdir=tmpdir):
        m = _CVE_FILE.search(name)
        if m is None:
            continue  # delta.json, deltaLog.json, …
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise FeedFormatError(f"{archive.name}: member {name} is not JSON ({e})") from None
        try:
            rec = parse_cve5(doc)
        except VulnRecordError:
            tally.skipped.append(m.group(1))
            continue
        tally.see(rec)
        yield rec.id, json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _write(directory: Path, lines: Iterable[tuple[str, str]]) -> tuple[Path, int]:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cvelist.", suffix=".gz.tmp")
    os.close(fd)
    n = 0
    try:
        # mtime 0: the same records give the same bytes, so an unchanged copy keeps its sha256
        with open(tmp, "wb") as raw_out, gzip.GzipFile(fileobj=raw_out, mode="wb", compresslevel=1, mtime=0) as gz:
            out = io.TextIOWrapper(gz, encoding="utf-8")
            for cve, raw in lines:
                out.write(f"{cve}\t{raw}\n")
                n += 1
            out.flush()
            out.detach()
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), n


def _replace_all(archive: Path, directory: Path) -> tuple[Path, int, _Tally]:
    tally = _Tally()
    tmp, n = _write(directory, _archive_records(archive, tally, directory))
    if n == 0:
        tmp.unlink(missing_ok=True)
        raise FeedFormatError(f"{archive.name} holds no CVE JSON 5 records")
    return tmp, n, tally


def _apply(archive: Path, held: Path | None, directory: Path) -> tuple[Path, int, int, _Tally]:
    """A new copy: the held one with the delta's records replacing theirs by id, and new ones added at the end."""
    tally = _Tally()
    delta = dict(_archive_records(archive, tally, directory))  # a delta is small (a day's changes)

    def merged() -> Iterator[tuple[str, str]]:
        if held is not None and held.exists():
            with gzip.open(held, "rt", encoding="utf-8") as f:
                for line in f:
                    cve, _, raw = line.partition("\t")
                    if cve in delta:
                        yield cve, delta.pop(cve)
                    else:
                        yield cve, raw.rstrip("\n")
        yield from delta.items()

    changed = len(delta)
    tmp, n = _write(directory, merged())
    return tmp, n, changed, tally


def _install(
    tmp: Path, source: FeedSource, directory: Path, state: FeedState, records: int, now: dt.datetime, detail: dict[str, Any]
) -> None:
    """Rename the new copy over the held one and record it, with its ``detail`` (as of, base, deltas) in the state."""
    try:
        digest = sha256_file(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, directory / source.filename)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    state.detail.clear()
    state.detail.update(detail)
    if state.sha256 != digest:
        state.last_changed = now
    state.records, state.size, state.sha256 = records, size, digest
    state.last_success, state.last_error = now, None
    save_state(directory, state)  # at once: the held copy and its state agree even if the process dies next


# -- fetching ---------------------------------------------------------------------------------------------------


def _check_archive(path: Path) -> int:
    """The download's parse check: a zip whose declared sizes are within bounds (the records are parsed when applied)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except zipfile.BadZipFile as e:
        raise FeedFormatError(f"not a zip archive ({e})") from None
    if len(infos) > LIMITS.max_members:
        raise FeedFormatError(f"more than {LIMITS.max_members} members; refused as a possible zip bomb")
    if sum(i.file_size for i in infos) > LIMITS.max_total:
        raise FeedFormatError(f"declares more than {LIMITS.max_total} unpacked bytes; refused as a possible zip bomb")
    return len(infos)


class _Fetcher:
    def __init__(self, source: FeedSource, directory: Path, state: FeedState, client: httpx.Client, now: dt.datetime):
        self.source, self.directory, self.state, self.client, self.now = source, directory, state, client, now
        self.downloads = directory / f"{source.name}.downloads"
        self.downloads.mkdir(exist_ok=True)
        self.held = directory / source.filename
        self.detail = state.detail

    def url(self, kind: str, day: dt.date, hour: int = 0) -> str:
        return f"{self.source.url.rstrip('/')}/{LAYOUT[kind].format(date=day.isoformat(), hour=hour)}"

    def get(self, kind: str, url: str) -> Path | None:
        """Download one archive (its own file and state, named as published); its path when it is new, None when
        the server says it is unchanged (304). Raises FeedHttpError (404: not published) or FeedError."""
        name = archive_name(url)
        sub = FeedSource(name=name, url=url, filename=name, count_records=_check_archive)
        st = load_state(self.downloads, name)
        try:
            fresh = download(sub, self.downloads, st, self.client, self.now)
        except FeedError as e:
            st.last_error = str(e)
            raise
        except httpx.HTTPError as e:
            resumes = " and the next fetch resumes" if st.partial is not None and st.partial.validator else ""
            st.last_error = f"fetching {url} failed ({type(e).__name__}: {e})"
            raise FeedError(st.last_error + resumes) from None
        finally:
            if (self.downloads / f"{name}.part").exists() or (self.downloads / name).exists():
                save_state(self.downloads, st)
        return self.downloads / name if fresh else None

    def prune(self) -> None:
        """Drop the archives (and their states) of days before the held copy's date: they are applied."""
        as_of = self.detail.get("as_of")
        if not as_of:
            return
        for p in self.downloads.iterdir():
            m = _DAY.search(p.name)
            if m and m.group(1) < as_of[:10]:  # an unfinished download of such a day too: it is not needed
                p.unlink(missing_ok=True)

    def bulk(self, why: str) -> None:
        today = self.now.date()
        for day in (today, today - dt.timedelta(days=1)):  # today's may not be published in the first minutes
            try:
                archive = self.get("bulk", self.url("bulk", day))
            except FeedHttpError as e:
                if e.status == 404:
                    continue
                raise
            if archive is None:
                self.state.last_success, self.state.last_error = self.now, None
                return
            tmp, n, tally = _replace_all(archive, self.directory)
            detail: dict[str, Any] = {"as_of": _midnight(day).isoformat(), "base": archive_name(self.url("bulk", day))}
            detail["why_bulk"] = why
            detail.update(deltas=[], skipped=tally.skipped[:100], skipped_count=len(tally.skipped))
            _install(tmp, self.source, self.directory, self.state, n, self.now, detail)
            archive.unlink(missing_ok=True)  # hundreds of MB; the next bulk is another file anyway
            (self.downloads / f"{archive.name}.state.json").unlink(missing_ok=True)
            return
        raise FeedError(f"no bulk archive published for {today} or the day before ({self.url('bulk', today)}): {why}")

    def delta(self, kind: str, url: str, as_of: dt.datetime) -> bool:
        """Apply one delta if it is published; False when it is not (404)."""
        try:
            archive = self.get(kind, url)
        except FeedHttpError as e:
            if e.status == 404:
                return False
            raise
        if archive is None:
            self.detail["as_of"] = as_of.isoformat()
        else:
            tmp, n, changed, tally = _apply(archive, self.held, self.directory)
            detail = dict(self.detail, as_of=as_of.isoformat())
            detail["deltas"] = [*detail.get("deltas", [])[-49:], f"{archive_name(url)}: {changed} records"]
            detail["skipped_count"] = detail.get("skipped_count", 0) + len(tally.skipped)
            _install(tmp, self.source, self.directory, self.state, n, self.now, detail)
        self.state.last_success, self.state.last_error = self.now, None
        return True

    def run(self) -> None:
        as_of_raw = self.detail.get("as_of")
        as_of = dt.datetime.fromisoformat(as_of_raw) if as_of_raw and self.held.exists() else None
        if as_of is None:
            self.bulk("no held copy to apply deltas onto" if not self.held.exists() else "the held copy's date is unknown")
            return
        if self.now - as_of > MAX_DELTA_AGE:
            self.bulk(f"the held copy (as of {as_of.isoformat()}) is older than {MAX_DELTA_AGE.days} days")
            return
        day = as_of.date()
        today = self.now.date()
        while day < today:
            if not self.delta("end_of_day", self.url("end_of_day", day), _midnight(day + dt.timedelta(days=1))):
                self.bulk(f"the end-of-day delta of {day} is not published ({self.url('end_of_day', day)})")
                return
            day += dt.timedelta(days=1)
        held_as_of = dt.datetime.fromisoformat(self.detail["as_of"])
        lowest = held_as_of.hour if held_as_of.date() == today else 1
        for hour in range(self.now.hour, max(lowest, self.now.hour - _HOURLY_TRIES + 1) - 1, -1):
            if hour < 1:
                break
            when = _midnight(today) + dt.timedelta(hours=hour)
            if self.delta("hourly", self.url("hourly", today, hour), when):
                return
        self.state.last_success, self.state.last_error = self.now, None  # no newer hourly delta yet: current as of as_of


def archive_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def sync_cvelist(
    source: FeedSource, directory: Path, client: httpx.Client | None = None, now: dt.datetime | None = None
) -> FeedState:
    """Bring the held copy up to date (deltas, else the bulk archive); never raises for feed trouble."""
    directory.mkdir(parents=True, exist_ok=True)
    now = now or _now()
    http = client or make_client()
    try:
        with locked(directory, source.name):
            state = load_state(directory, source.name)
            state.last_attempt, state.url = now, source.url
            try:
                fetcher = _Fetcher(source, directory, state, http, now)
                fetcher.run()
                fetcher.prune()
                state.origin = "http"
            except (FeedError, FeedFormatError) as e:
                state.last_error = f"{e}; the last good copy is kept"
            except httpx.HTTPError as e:
                state.last_error = (
                    f"fetching the CVE list from {source.url} failed ({type(e).__name__}: {e}); the last good copy is kept"
                )
            except OSError as e:
                state.last_error = f"writing {source.name} to {directory} failed ({e}); the last good copy is kept"
            save_state(directory, state)
            return state
    finally:
        if client is None:
            http.close()


def _kind_of(path: Path) -> tuple[str | None, dt.datetime | None]:
    for pattern, kind in _NAMES:
        m = pattern.search(path.name)
        if m:
            day = dt.date.fromisoformat(m.group(1))
            if kind == "bulk":
                return kind, _midnight(day)
            if kind == "end_of_day":
                return kind, _midnight(day + dt.timedelta(days=1))
            return kind, _midnight(day) + dt.timedelta(hours=int(m.group(2)))
    return None, None


def _hour(t: dt.datetime | None) -> dt.datetime | None:
    """An archive without cvelistV5's file name (an upload): as of the hour of its newest record's update."""
    return None if t is None else t.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _is_bulk(path: Path) -> bool:
    with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(path) as zf:
        return any(n.endswith(".zip") or n.startswith("cves/") for n in zf.namelist())
    return False


def import_cvelist(
    source: FeedSource, directory: Path, path: Path, expected_sha256: str | None = None, now: dt.datetime | None = None
) -> FeedState:
    """A cvelistV5 archive brought in by hand: a bulk archive replaces the held copy, a delta is applied onto it.
    Raises FeedError when it is refused (the held copy is kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = now or _now()
    with locked(directory, source.name):
        state = load_state(directory, source.name)
        state.last_attempt = now
        held = directory / source.filename
        _kind, as_of = _kind_of(path)
        try:
            if expected_sha256 is not None and sha256_file(path) != expected_sha256.lower():
                raise FeedError(f"checksum mismatch: the file's sha256 is not {expected_sha256.lower()}")
            if _is_bulk(path):
                tmp, n, tally = _replace_all(path, directory)
                as_of = as_of or _hour(tally.latest)
                detail: dict[str, Any] = {"as_of": as_of.isoformat() if as_of else None, "base": path.name, "deltas": []}
                detail.update(skipped=tally.skipped[:100], skipped_count=len(tally.skipped))
                _install(tmp, source, directory, state, n, now, detail)
            else:
                tmp, n, changed, tally = _apply(path, held, directory)
                detail = dict(state.detail)
                detail["deltas"] = [*detail.get("deltas", [])[-49:], f"{path.name}: {changed} records"]
                detail["skipped_count"] = detail.get("skipped_count", 0) + len(tally.skipped)
                held_as_of = detail.get("as_of")
                as_of = as_of or _hour(tally.latest)
                if as_of is not None and (held_as_of is None or as_of > dt.datetime.fromisoformat(held_as_of)):
                    detail["as_of"] = as_of.isoformat()
                _install(tmp, source, directory, state, n, now, detail)
        except (FeedError, FeedFormatError, OSError) as e:
            state.last_error = f"import of {path} refused: {e}; the last good copy is kept"
            save_state(directory, state)
            raise FeedError(state.last_error) from None
        state.etag = state.last_modified = None
        state.origin = f"import {path.name}"
        save_state(directory, state)
        return state
