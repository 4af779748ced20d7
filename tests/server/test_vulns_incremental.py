"""Incremental re-matching (services/vuln_scan.py with the real services, on SQLite and PostgreSQL): after a feed
change, an incremental run re-matches only the vulnerabilities whose feed data changed (and new releases and
inventories whole), leaves every other finding as it was, and ends with exactly the findings a full run gives.

Data: the feeds of vuln_fixtures.py (the 32 real CVE JSON 5 records, the derived Debian tracker excerpt, the real
KEV catalogue) and its SBOMs (the Debian SPDX subset with two libssl3 versions, the Yocto CycloneDX subset). The
"next day's" feeds are derived from them in `_next_day` (each change is named there).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bulkhead.cra.feeds import import_file
from bulkhead.server.db import Database, migrate
from bulkhead.server.models import Device, Release, ReleaseSbom, Tenant
from bulkhead.server.services.vuln_scan import Scanner
from bulkhead.server.store import FsStore
from bulkhead.server.vuln_feeds import CVE_RECORDS, FEEDS, FeedStore
from bulkhead.server.vuln_models import VulnFinding, VulnProfile, VulnScanRun
from bulkhead.server.vuln_state_models import VulnCveDigest, VulnReleaseScan
from tests.conftest import SHARED
from tests.server.conftest import pg_url
from tests.server.test_vulns_jobs import EPSS, _setup, feed_server  # noqa: F401 (feed_server: a fixture)
from tests.server.vuln_fixtures import (
    BOOKWORM,
    CDX_YOCTO,
    DEBIAN,
    KEV,
    NEW_SSL,
    OLD_SSL,
    TRACKER,
    YOCTO,
    debian_sbom,
    make_lab,
)

CHANGED_RECORD = "CVE-2024-5535"  # openssl: its affected range is cut so 3.2.1 is no longer in it
GONE_RECORD = "CVE-2024-6119"  # openssl: withdrawn from the feed
NEW_RECORD = "CVE-2099-0001"  # new: a copy of CVE-2024-2511 (openssl) under a new id
CHANGED_ISSUE = "CVE-2024-2398"  # curl in the tracker: bookworm's open issue is resolved
UNTOUCHED = "CVE-2024-2511"  # openssl, same in both days: its findings must stay as they were


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (
        f"sqlite:///{tmp_path / 'db.sqlite'}"
        if request.param == "sqlite"
        else pg_url().replace("postgresql://", "postgresql+psycopg://")
    )
    migrate(url)
    database = Database(url)
    yield database
    database.dispose()


def _records() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((SHARED / "cve").glob("CVE-*.json"))]


def _next_day(work: Path) -> tuple[Path, Path]:
    """The feeds a day later: one record's version range changed, one record gone, one new, one tracker issue fixed."""
    records = [r for r in _records() if r["cveMetadata"]["cveId"] != GONE_RECORD]
    for r in records:
        if r["cveMetadata"]["cveId"] == CHANGED_RECORD:
            for a in r["containers"]["cna"]["affected"]:
                for v in a.get("versions", []):
                    if v.get("lessThan", "").startswith("3.2."):
                        v["lessThan"] = "3.2.0"
    new = copy.deepcopy(next(r for r in records if r["cveMetadata"]["cveId"] == UNTOUCHED))
    new["cveMetadata"]["cveId"] = NEW_RECORD
    records.append(new)
    (work / "cve-records-2.json").write_text(json.dumps(records))
    tracker = json.loads(TRACKER.read_text())
    tracker["curl"][CHANGED_ISSUE]["releases"]["bookworm"].update(status="resolved", fixed_version="7.88.1-10+deb12u7")
    (work / "tracker-2.json").write_text(json.dumps(tracker))
    return work / "cve-records-2.json", work / "tracker-2.json"


class Fleet:
    """A tenant with Debian and Yocto releases and devices, seeded through the models (as the API stores them)."""

    def __init__(self, db: Database, work: Path) -> None:
        self.db, self.work = db, work
        self.store = FsStore(work / "artifacts")
        self.feeds = FeedStore(work / "feeds")
        self.scanner = Scanner(db, self.store, self.feeds)
        with db.session() as s:
            t = Tenant(name="incr")
            s.add(t)
            s.flush()
            self.tid = t.id

    def feed(self, name: str, path: Path) -> None:
        import_file(FEEDS[name], self.feeds.directory, path)

    def release(self, compatible: str, version: str, sbom: bytes) -> int:
        sha = hashlib.sha256(sbom).hexdigest()
        dst = self.store.path(sha)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(sbom)
        fmt = "cyclonedx" if b"CycloneDX" in sbom else "spdx"
        with self.db.session() as s:
            r = Release(
                tenant_id=self.tid, compatible=compatible, version=version, format="plain", sha256="0" * 64, size=1, info={}
            )
            s.add(r)
            s.flush()
            s.add(ReleaseSbom(release_id=r.id, format=fmt, spec_version="x", sha256=sha, size=len(sbom), components=0))
            return r.id

    def device(self, name: str, compatible: str, version: str, packages: dict[str, str] | None = None) -> None:
        reported: dict[str, Any] = {"os_version": version, "os_release": BOOKWORM}
        if packages:
            reported["packages"] = {"format": "dpkg", "count": len(packages), "packages": packages}
        sha = hashlib.sha256(json.dumps(reported, sort_keys=True).encode()).hexdigest()
        with self.db.session() as s:
            s.add(
                Device(tenant_id=self.tid, name=name, compatible=compatible, status="active", tags=[], groups=["g"],
                       attributes={}, reported=reported, os_version=version, reported_sha256=sha)
            )  # fmt: skip

    def scan(self, kind: str) -> dict[str, Any]:
        run = self.scanner.scan(self.tid, "test", kind)
        assert run is not None
        return run

    def findings(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [
                {c: getattr(f, c) for c in VulnFinding.__table__.columns.keys()}  # noqa: SIM118
                for f in s.scalars(select(VulnFinding).where(VulnFinding.tenant_id == self.tid))
            ]


def _content(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """The findings without their row id and run (what a run found, not when)."""
    return Counter(tuple(sorted((k, v) for k, v in r.items() if k not in ("id", "run_id"))) for r in rows)


def _from_scratch(f: Fleet) -> dict[str, Any]:
    """A full run that knows nothing of the stored findings (no per-id digests): it rewrites every row."""
    with f.db.session() as s:
        s.execute(update(VulnReleaseScan).where(VulnReleaseScan.tenant_id == f.tid).values(id_digests=None))
        s.execute(update(VulnProfile).where(VulnProfile.tenant_id == f.tid).values(id_digests=None))
    run = f.scan("full")
    assert run["counts"]["rows_written"] == run["counts"]["findings"] == len(f.findings())
    return run


def _fleet(db: Database, tmp_path: Path) -> Fleet:
    if not (SHARED / "cve").is_dir():
        pytest.skip(f"shared testdata not found: {SHARED}")
    f = Fleet(db, tmp_path)
    (tmp_path / "cve-records.json").write_text(json.dumps(_records()))
    f.feed("cve-records", tmp_path / "cve-records.json")
    f.feed("debian-tracker", TRACKER)
    f.feed("cisa-kev", KEV)
    f.release(DEBIAN, "1", debian_sbom(OLD_SSL))
    f.release(YOCTO, "1", CDX_YOCTO.read_bytes())
    f.device("deb-a", DEBIAN, "1", {"libssl3": OLD_SSL, "curl": "7.88.1-10+deb12u7"})
    f.device("yocto-a", YOCTO, "1")
    return f


def test_an_incremental_run_after_a_feed_change_ends_where_a_full_run_does(db: Database, tmp_path: Path) -> None:
    f = _fleet(db, tmp_path)
    first = f.scan("full")
    before = {r["id"]: r for r in f.findings()}
    cves_before = {r["cve"] for r in before.values()}
    assert {CHANGED_RECORD, GONE_RECORD, CHANGED_ISSUE, UNTOUCHED} <= cves_before  # each change touches findings
    with db.session() as s:
        assert s.scalar(select(VulnCveDigest.digest).where(VulnCveDigest.tenant_id == f.tid, VulnCveDigest.cve == UNTOUCHED))

    records, tracker = _next_day(tmp_path)
    f.feed("cve-records", records)
    f.feed("debian-tracker", tracker)
    new_release = f.release(DEBIAN, "2", debian_sbom(NEW_SSL))  # a release uploaded since: matched whole
    f.device("deb-b", DEBIAN, "2")
    incr = f.scan("incremental")
    assert incr["kind"] == "incremental" and incr["feeds"]["cve-records"]["sha256"] != first["feeds"]["cve-records"]["sha256"]
    changed = {CHANGED_RECORD, GONE_RECORD, NEW_RECORD, CHANGED_ISSUE}
    assert incr["counts"]["cves_changed"] == len(changed)
    assert incr["counts"]["releases"] == 1 and incr["counts"]["releases_delta"] == 2  # the new one whole, the others delta

    after = f.findings()
    written = [r for r in after if r["run_id"] == incr["id"]]
    # Only the changed vulnerabilities were re-matched in the releases and profiles matched before ...
    assert {r["cve"] for r in written if r["release_id"] != new_release and r["profile_id"] is None} <= changed
    assert NEW_RECORD in {r["cve"] for r in written} and GONE_RECORD not in {r["cve"] for r in after}
    # ... and every finding of the other vulnerabilities is the very row the full run wrote.
    kept = {r["id"]: r for r in after if r["run_id"] == first["id"]}
    assert kept and all(before[i] == r for i, r in kept.items())
    assert {r["cve"] for r in kept.values()}.isdisjoint(changed)
    assert {r["id"] for r in before.values() if r["cve"] not in changed} == set(kept)

    full = f.scan("full")  # the same data, matched again: only the ids the incremental run rewrote are written again
    assert _content(f.findings()) == _content(after)
    assert full["counts"]["findings"] == len(after)
    again = [r for r in f.findings() if r["run_id"] == full["id"]]
    assert {r["cve"] for r in again} <= changed and full["counts"]["rows_written"] == len(again) < len(after)
    assert f.scan("full")["counts"].get("rows_written", 0) == 0  # then nothing is left to rewrite
    _from_scratch(f)  # and a run that rewrites every row finds the same
    assert _content(f.findings()) == _content(after)


def test_a_full_run_after_a_feed_change_rewrites_only_the_changed_ids_rows(db: Database, tmp_path: Path) -> None:
    f = _fleet(db, tmp_path)
    first = f.scan("full")
    assert first["counts"]["rows_written"] == first["counts"]["findings"]  # nothing stored yet: every row written
    before = {r["id"]: r for r in f.findings()}

    records, tracker = _next_day(tmp_path)
    f.feed("cve-records", records)
    f.feed("debian-tracker", tracker)
    full = f.scan("full")
    after = f.findings()
    changed = {CHANGED_RECORD, GONE_RECORD, NEW_RECORD, CHANGED_ISSUE}
    written = [r for r in after if r["run_id"] == full["id"]]
    # Only the rows of the changed ids were deleted and written again (in releases and profiles) ...
    assert written and {r["cve"] for r in written} <= changed and NEW_RECORD in {r["cve"] for r in written}
    assert full["counts"]["rows_written"] == len(written) < full["counts"]["findings"] == len(after)
    assert GONE_RECORD not in {r["cve"] for r in after}
    # ... every other row (and those of a changed id that found the same in a release or profile) is the very row the
    # first run wrote ...
    kept = {r["id"]: r for r in after if r["run_id"] == first["id"]}
    assert {i for i, r in before.items() if r["cve"] not in changed} <= set(kept)
    assert len(kept) + len(written) == len(after)
    assert all(before[i] == r for i, r in kept.items())
    # ... and the findings are exactly those of a full run that rewrites everything.
    _from_scratch(f)
    assert _content(f.findings()) == _content(after)


def test_an_incremental_run_with_nothing_changed_touches_nothing(db: Database, tmp_path: Path) -> None:
    f = _fleet(db, tmp_path)
    first = f.scan("incremental")  # no earlier run: everything is matched
    assert first["counts"]["releases"] == 2 and first["counts"]["findings"] > 0
    rows = f.findings()
    again = f.scan("incremental")
    assert again["counts"]["cves_changed"] == 0 and again["counts"]["findings"] == 0
    assert again["counts"]["releases"] == 0 and again["counts"]["profiles"] == 0
    assert f.findings() == rows
    full = f.scan("full")  # a full run that finds the same leaves the releases' findings as they are
    assert full["counts"]["releases"] == 2 and full["counts"]["releases_same"] == 2
    own = sorted((r for r in f.findings() if r["profile_id"] is None), key=lambda r: r["id"])
    assert own == sorted((r for r in rows if r["profile_id"] is None), key=lambda r: r["id"])
    assert _content(f.findings()) == _content(rows)


def test_the_sync_job_rescans_incrementally_only_after_a_feed_changed(
    tmp_path: Path,
    feed_server: tuple[Path, str],  # noqa: F811 (the fixture imported above)
) -> None:
    """jobs.py's four-hourly sync: an unchanged feed scans nothing; a changed EPSS file re-matches the CVEs whose score
    moved, in an incremental run (the daily job stays a full re-scan)."""
    lab = make_lab(tmp_path / "lab")
    mirror, base = feed_server
    shutil.copy(lab.feeds["cisa-kev"], mirror / "cisa-kev.json")
    shutil.copy(TRACKER, mirror / "debian-tracker.json")
    shutil.copy(EPSS, mirror / "first-epss.csv.gz")
    db, jobs, vulns, tid = _setup(tmp_path, base)
    import_file(CVE_RECORDS, vulns.feeds.directory, lab.feeds["cve-records"])
    due = jobs.vuln_tasks["sync"].task_class()
    assert due.validate_datetime(dt.datetime(2026, 12, 3, 4, 47)) and not due.validate_datetime(dt.datetime(2026, 12, 3, 5, 47))

    jobs.vuln_tasks["daily"].func()
    jobs.vuln_tasks["sync"].func()  # nothing changed: no run
    scans = select(VulnScanRun).where(VulnScanRun.tenant_id == tid, VulnScanRun.kind != "kev").order_by(VulnScanRun.id)
    with db.session() as s:
        assert [r.kind for r in s.scalars(scans)] == ["full"]

    lines = EPSS.read_text().splitlines()
    moved = [line.replace("0.83371", "0.91234") if line.startswith("CVE-2024-1086,") else line for line in lines]
    (mirror / "first-epss.csv.gz").write_text("\n".join(moved) + "\n")
    later = (mirror / "first-epss.csv.gz").stat().st_mtime + 60  # Last-Modified has whole seconds: make it newer
    os.utime(mirror / "first-epss.csv.gz", (later, later))
    jobs.vuln_tasks["sync"].func()
    with db.session() as s:
        runs = list(s.scalars(scans))
        assert [r.kind for r in runs] == ["full", "incremental"]
        assert runs[1].counts["cves_changed"] == 1 and runs[1].actor == "system:vuln-jobs"
        kernel = s.scalars(select(VulnFinding).where(VulnFinding.cve == "CVE-2024-1086")).all()
        assert kernel and all(f.epss == pytest.approx(0.91234) and f.run_id == runs[1].id for f in kernel)
        others = s.scalars(select(VulnFinding).where(VulnFinding.cve != "CVE-2024-1086")).all()
        assert others and all(f.run_id == runs[0].id for f in others)
