"""The server's vulnerability feed store: which feeds exist, where their files are, and the data read from them.

Feeds are global to the server (every tenant's scans read the same data): files under `<data dir>/feeds`, kept
by `bulkhead.cra.feeds` (conditional, resumable fetches that never lose the last good copy; `import_file` for
air-gapped sites). Besides the fetched feeds of `bulkhead.cra.feed_sources` (Debian tracker, CISA KEV, FIRST EPSS)
there is `cve-records`: CVE JSON 5 and NVD API 2.0 records, import only (a JSON array of records, one record, an
NVD API response, or an object whose `records` is such an array; plain or gzip). `cvelist` is the CVE list fetched
from cvelistV5's bulk and delta archives (`bulkhead.cra.cvelist`); a scan reads the records of both. `osv` holds
OSV.dev's export of each configured app ecosystem (`bulkhead.cra.osv_feed`), read through `FeedStore.osv()`.
The parsed data is cached per process by the files' sha256, so a scan after an unchanged feed does not parse it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkhead.cra import attribution
from bulkhead.cra.cve5 import parse_cve5
from bulkhead.cra.cvelist import iter_records as iter_cvelist
from bulkhead.cra.debian_tracker import DebianTracker, load_tracker
from bulkhead.cra.epss import EpssScores, load_epss
from bulkhead.cra.errors import VulnRecordError
from bulkhead.cra.feed_errors import FeedFormatError
from bulkhead.cra.feed_sources import CISA_KEV, CVE_LIST, DEBIAN_TRACKER, FIRST_EPSS, OSV
from bulkhead.cra.feed_state import load_state
from bulkhead.cra.feedfile import open_feed_file
from bulkhead.cra.feeds import FeedSource, feed_status
from bulkhead.cra.kev import KevCatalog, load_kev
from bulkhead.cra.nvd import parse_nvd_cve, parse_nvd_response
from bulkhead.cra.osv_feed import OsvIndex, load_osv_index, parse_ecosystems
from bulkhead.cra.vulnrecord import VulnRecord

from .feed_replica import FeedReplica
from .heap import paused_gc

__all__ = ["CVE_RECORDS", "FEEDS", "FeedStore", "Knowledge", "OsvIndex", "load_records", "mirrored"]

log = logging.getLogger(__name__)


def _parse_item(item: Any) -> list[VulnRecord]:
    if isinstance(item, Mapping) and item.get("dataType") == "CVE_RECORD":
        return [parse_cve5(item)]
    if isinstance(item, Mapping) and isinstance(item.get("vulnerabilities"), list):
        return parse_nvd_response(item)
    if isinstance(item, Mapping) and isinstance(item.get("id"), str) and ("vulnStatus" in item or "configurations" in item):
        return [parse_nvd_cve(item)]
    if isinstance(item, Mapping) and isinstance(item.get("cve"), Mapping):
        return [parse_nvd_cve(item["cve"])]
    raise VulnRecordError(None, "an item is neither a CVE JSON 5 record (dataType CVE_RECORD) nor an NVD API 2.0 cve")


def load_records(path: Path) -> list[VulnRecord]:
    """The CVE 5 / NVD records of a `cve-records` feed file; FeedFormatError naming the problem otherwise."""
    with open_feed_file(path) as f:
        try:
            doc = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FeedFormatError(f"not a CVE records file: not JSON ({e})") from None
    if isinstance(doc, Mapping) and isinstance(doc.get("records"), list):
        doc = doc["records"]
    items = doc if isinstance(doc, list) else [doc]
    out: list[VulnRecord] = []
    for i, item in enumerate(items):
        try:
            out.extend(_parse_item(item))
        except VulnRecordError as e:
            raise FeedFormatError(f"not a CVE records file: item {i}: {e}") from None
    return out


CVE_RECORDS = FeedSource(
    name="cve-records",
    url="",  # import only: `bulkhead vuln import FILE --feed cve-records`
    filename="cve-records.json",
    count_records=lambda p: len(load_records(p)),
    attribution=f"{attribution.CVE} {attribution.NVD}",
)

FEEDS: dict[str, FeedSource] = {s.name: s for s in (CVE_RECORDS, CVE_LIST, DEBIAN_TRACKER, CISA_KEV, FIRST_EPSS, OSV)}


def mirrored(mirror: str | None, osv_ecosystems: str | None = None) -> dict[str, FeedSource]:
    """The feeds, fetched from `mirror` (a URL holding each feed's file under its usual name, the CVE list's release
    tree under `cvelistV5/` and the OSV exports under `osv/<ecosystem>/all.zip`) when one is given, with OSV's
    ecosystems from `osv_ecosystems` (comma-separated; empty: the defaults). A mirror serves no published checksum:
    the file is still parsed before it replaces the held copy."""
    feeds = dict(FEEDS)
    feeds["osv"] = dataclasses.replace(OSV, parts=parse_ecosystems(osv_ecosystems))
    if not mirror:
        return feeds
    base = mirror.rstrip("/")
    return {
        n: dataclasses.replace(s, url=f"{base}/{s.mirror_path or s.filename}", checksum_url=None) if s.url else s
        for n, s in feeds.items()
    }


@dataclass
class Knowledge:
    """What the feeds say, as one scan reads it."""

    records: dict[str, list[VulnRecord]] = field(default_factory=dict)  # CVE id -> its records (CVE 5 and/or NVD)
    tracker: DebianTracker | None = None
    kev: KevCatalog | None = None
    epss: EpssScores | None = None
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # feed -> the state this data came from
    osv: OsvIndex | None = None  # OSV records by (ecosystem, package name), when the osv feed is held
    by_product: dict[str, list[VulnRecord]] | None = None  # built by the first match that needs it

    def all_records(self) -> Iterable[VulnRecord]:
        return (r for rs in self.records.values() for r in rs)


def _newer(a: VulnRecord, b: VulnRecord) -> bool:
    """Whether `a` was updated after `b` (a record without a date is the older)."""
    return a.updated is not None and (b.updated is None or a.updated > b.updated)


class FeedStore:
    """The feed directory and a per-process cache of its parsed data (keyed by each file's sha256). With a `replica`
    (several hosts share the feeds: feed_replica.py), the directory is brought up to the cluster's copy before the
    feeds are read (at most every PULL_SECONDS)."""

    PULL_SECONDS = 5.0

    def __init__(
        self, directory: Path, sources: Mapping[str, FeedSource] | None = None, replica: FeedReplica | None = None
    ) -> None:
        self.directory = directory
        self.sources: Mapping[str, FeedSource] = sources if sources is not None else FEEDS
        self.replica = replica
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str | None, frozenset[str] | None], Any] = {}
        self._pulled = -float("inf")

    def pull(self) -> None:
        """The cluster's copy of the feeds here (a no-op without a replica), at most every PULL_SECONDS; skipped
        while this host fetches or imports a feed, or pulls on another thread (the feeds are then read as this host
        holds them). A failure is logged, and tried again PULL_SECONDS later."""
        if self.replica is None or time.monotonic() - self._pulled < self.PULL_SECONDS:
            return
        self._pulled = time.monotonic()
        try:
            self.replica.pull(wait=False)
        except Exception as e:
            log.warning("the vulnerability feeds could not be brought up to the cluster's copy (%s); this host's is read", e)

    def changing(self) -> contextlib.AbstractContextManager[None]:
        """Around a fetch or an import: the cluster's copy first, what changed published after (feed_replica.py)."""
        return self.replica.changing() if self.replica is not None else contextlib.nullcontext()

    def source(self, name: str) -> FeedSource | None:
        return self.sources.get(name)

    def status(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        self.pull()
        out = []
        for s in self.sources.values():
            st = feed_status(s, self.directory, now)
            st["import_only"] = not s.url
            st["interval_seconds"] = int(s.interval.total_seconds())
            out.append(st)
        return out

    def versions(self) -> dict[str, dict[str, Any]]:
        """Which copy of each feed is held now (recorded with every scan run)."""
        out = {}
        for name in self.sources:
            st = load_state(self.directory, name)
            out[name] = {
                "sha256": st.sha256,
                "records": st.records,
                "origin": st.origin,
                "last_changed": st.last_changed.isoformat() if st.last_changed else None,
                "last_success": st.last_success.isoformat() if st.last_success else None,
            }
        return out

    def _load(self, name: str, loader: Any, only: frozenset[str] | None = None) -> Any:
        source = self.sources[name]
        path = self.directory / source.filename
        sha = load_state(self.directory, name).sha256
        if sha is None or not path.exists():
            return None
        key = (name, sha, only)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        with paused_gc():  # a feed is a million acyclic objects
            value = loader(path)
        with self._lock:
            for k in [k for k in self._cache if k[0] == name]:
                del self._cache[k]  # one copy per feed: the previous version's data goes
            self._cache[key] = value
        return value

    def knowledge(self, debian_releases: Iterable[str] = ()) -> Knowledge:
        """Everything a scan needs; a feed never fetched or imported is absent (None / empty)."""
        self.pull()
        k = Knowledge(versions=self.versions())
        records: list[VulnRecord] | None = self._load("cve-records", load_records)
        for r in records or []:
            k.records.setdefault(r.id, []).append(r)
        if "cvelist" in self.sources:
            for r in self._load("cvelist", lambda p: list(iter_cvelist(p))) or []:
                rs = k.records.setdefault(r.id, [])
                if rs:  # also imported: of two CVE 5 copies of a record, the later updated one counts
                    rs[:] = [x for x in rs if x.source != r.source or _newer(x, r)] or [r]
                    if r not in rs and not any(x.source == r.source for x in rs):
                        rs.append(r)
                else:
                    rs.append(r)
        k.osv = self.osv()
        wanted = frozenset(debian_releases)
        if wanted:
            k.tracker = self._load("debian-tracker", lambda p: load_tracker(p, wanted), wanted)
        k.kev = self._load("cisa-kev", load_kev)
        k.epss = self._load("first-epss", load_epss)
        return k

    def osv(self) -> OsvIndex | None:
        """The OSV records of the configured app ecosystems by (ecosystem, package name), or None when no
        ecosystem is held. Look a package up with `index.get("PyPI", "Django")` (PyPI names are normalised);
        `index.by_package` is the dict itself. Parsed once per process and held copy (the feed's sha256)."""
        source = self.sources.get("osv")
        if source is None:
            return None
        self.pull()
        index: OsvIndex | None = self._load("osv", lambda _p: load_osv_index(self.directory, source.parts, source.name))
        return index

    def kev(self) -> KevCatalog | None:
        self.pull()
        catalog: KevCatalog | None = self._load("cisa-kev", load_kev)
        return catalog
