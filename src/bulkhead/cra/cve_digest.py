"""What the feeds say about each vulnerability, as one short digest per id: what incremental re-matching compares.

A vulnerability's findings depend only on what the feeds say about that one id (its CVE 5 / NVD records, the Debian
tracker's issue of that name in every source package, its KEV date and its EPSS score) and on the components. So
between two versions of the feeds, only the ids whose digest differs (or that appeared or went) can change a
finding; everything else stays as it was matched. A digest covers exactly what matching and the finding rows read:
a change elsewhere in a feed (a KEV entry's notes, an EPSS percentile, a tracker issue's description) re-matches
nothing. Pure: no database, no files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from .debian_tracker import DebianTracker, TrackerIssue
from .epss import EpssScores
from .kev import KevCatalog
from .osv import OsvRecord
from .osv_feed import OsvIndex
from .vulnrecord import VulnRecord

__all__ = ["changed_ids", "cve_digests", "osv_digests", "record_digests", "tracker_digests", "tracker_subset"]


def _h(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def record_digests(records: Mapping[str, Sequence[VulnRecord]]) -> dict[str, str]:
    """One digest per id over its records, in feed order (the typed records: their repr is deterministic)."""
    return {cve: _h(repr(tuple(rs))) for cve, rs in records.items()}


def tracker_digests(tracker: DebianTracker) -> dict[str, str]:
    """One digest per issue name (CVE or TEMP-) over its entries in every source package, for the releases read."""
    per: dict[str, list[TrackerIssue]] = {}
    for package in tracker.packages():
        for name, issue in tracker.issues(package).items():
            per.setdefault(name, []).append(issue)
    return {
        name: _h(repr(sorted(((i.package, tuple(sorted(i.releases.items()))) for i in issues), key=lambda x: x[0])))
        for name, issues in per.items()
    }


def osv_digests(index: OsvIndex) -> dict[str, str]:
    """One digest per id (the CVEs an OSV record is about, else its own id) over the OSV records that name it, in
    record id order: what matching an app's components reads."""
    per: dict[str, dict[str, OsvRecord]] = {}
    for records in index.by_package.values():
        for r in records:
            for cve in r.cves or (r.id,):
                per.setdefault(cve, {})[r.id] = r
    return {cve: _h(repr(tuple(rs[i] for i in sorted(rs)))) for cve, rs in per.items()}


def cve_digests(
    records: Mapping[str, str],
    tracker: Mapping[str, str],
    kev: KevCatalog | None = None,
    epss: EpssScores | None = None,
    osv: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The digest of every id the records, the tracker or OSV name (from their per-feed digests), with the KEV date
    and the EPSS score the finding rows carry. An id only KEV or EPSS names has no finding, so none here."""
    out = {}
    osv = osv or {}
    for cve in records.keys() | tracker.keys() | osv.keys():
        k = kev.get(cve) if kev is not None else None
        e = epss.get(cve) if epss is not None else None
        kev_part = k.date_added.isoformat() if k is not None else "-"
        epss_part = repr(e.epss) if e is not None else "-"
        osv_part = f"|{osv[cve]}" if cve in osv else ""  # (ids without OSV records keep their digest)
        out[cve] = _h(f"{records.get(cve, '-')}|{tracker.get(cve, '-')}|{kev_part}|{epss_part}{osv_part}")
    return out


def changed_ids(before: Mapping[str, str], now: Mapping[str, str]) -> set[str]:
    """The ids new, gone or different between two digest maps."""
    changed = {cve for cve, d in now.items() if before.get(cve) != d}
    changed.update(cve for cve in before if cve not in now)
    return changed


def tracker_subset(tracker: DebianTracker, names: Iterable[str]) -> DebianTracker:
    """The tracker with only the named issues (in their source packages, in the original order)."""
    wanted = set(names)
    packages: dict[str, dict[str, TrackerIssue]] = {}
    for package in tracker.packages():
        issues = {n: i for n, i in tracker.issues(package).items() if n in wanted}
        if issues:
            packages[package] = issues
    return DebianTracker(packages)
