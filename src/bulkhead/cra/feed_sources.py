"""The feeds this package parses, as :class:`FeedSource` records (URL, file, record count, attribution, interval).

The CVE list (cvelistV5 bulk + delta archives, :mod:`.cvelist`) and OSV (per-ecosystem exports, :mod:`.osv_feed`)
are kept from several files: they bring their own fetch and import. The import-only CVE 5 / NVD records file is
the server's (``bulkhead.server.vuln_feeds``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from . import attribution
from .cvelist import import_cvelist, sync_cvelist
from .debian_tracker import load_tracker
from .epss import load_epss
from .feeds import FeedSource
from .kev import load_kev
from .osv_feed import DEFAULT_ECOSYSTEMS, import_osv, sync_osv

__all__ = ["CISA_KEV", "CVE_LIST", "DEBIAN_TRACKER", "FIRST_EPSS", "OSV", "SOURCES"]


def _tracker_records(path: Path) -> int:
    return len(load_tracker(path))


def _kev_records(path: Path) -> int:
    return len(load_kev(path))


def _epss_records(path: Path) -> int:
    return len(load_epss(path))


DEBIAN_TRACKER = FeedSource(
    name="debian-tracker",
    url="https://security-tracker.debian.org/tracker/data/json",
    filename="debian-tracker.json",
    count_records=_tracker_records,
    attribution=attribution.DEBIAN,
)
CISA_KEV = FeedSource(
    name="cisa-kev",
    url="https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json",
    filename="cisa-kev.json",
    count_records=_kev_records,
    attribution=attribution.CISA_KEV,
    interval=dt.timedelta(hours=1),
)
FIRST_EPSS = FeedSource(
    name="first-epss",
    url="https://epss.empiricalsecurity.com/epss_scores-current.csv.gz",
    filename="first-epss.csv.gz",
    count_records=_epss_records,
    attribution=attribution.FIRST_EPSS,
)


def _held_records(path: Path) -> int:  # never called: the multi-file feeds check each file they fetch or import
    raise NotImplementedError


CVE_LIST = FeedSource(
    name="cvelist",
    url="https://github.com/CVEProject/cvelistV5/releases/download",  # + cvelist.LAYOUT
    filename="cvelist-records.gz",
    count_records=_held_records,
    attribution=attribution.CVE,
    sync=sync_cvelist,
    importer=import_cvelist,
    mirror_path="cvelistV5",
)
OSV = FeedSource(
    name="osv",
    url="https://osv-vulnerabilities.storage.googleapis.com",  # + <ecosystem>/all.zip
    filename="osv",  # a directory: one <ecosystem>.zip each
    count_records=_held_records,
    attribution=attribution.OSV,
    sync=sync_osv,
    importer=import_osv,
    mirror_path="osv",
    parts=DEFAULT_ECOSYSTEMS,
)

SOURCES: dict[str, FeedSource] = {s.name: s for s in (DEBIAN_TRACKER, CISA_KEV, FIRST_EPSS, CVE_LIST, OSV)}
