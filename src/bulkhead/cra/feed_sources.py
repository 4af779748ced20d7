"""The feeds this package parses, as :class:`FeedSource` records (URL, file, record count, attribution, interval).

The CVE 5 and NVD feeds are described next to their parsers.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from . import attribution
from .debian_tracker import load_tracker
from .epss import load_epss
from .feeds import FeedSource
from .kev import load_kev

__all__ = ["CISA_KEV", "DEBIAN_TRACKER", "FIRST_EPSS", "SOURCES"]


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

SOURCES: dict[str, FeedSource] = {s.name: s for s in (DEBIAN_TRACKER, CISA_KEV, FIRST_EPSS)}
