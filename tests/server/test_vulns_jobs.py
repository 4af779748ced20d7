"""The periodic vulnerability jobs (jobs.py with the real services on SQLite): feeds fetched from a local HTTP server
and every tenant re-scanned daily, KEV hourly with an event for a CVE newly known exploited, devices with a new
inventory every ten minutes; a feed that fails keeps its last good data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bulkhead.cra.feeds import import_file
from bulkhead.server.db import Database, migrate
from bulkhead.server.jobs import Jobs
from bulkhead.server.models import AuditEvent, Device, Release, ReleaseSbom, Tenant
from bulkhead.server.services.rollouts import RolloutService
from bulkhead.server.services.vuln_exposure import cve_exposure
from bulkhead.server.services.vulns import VulnService
from bulkhead.server.settings import Settings
from bulkhead.server.store import FsStore
from bulkhead.server.vuln_feeds import CVE_RECORDS, FEEDS
from bulkhead.server.vuln_models import VulnFinding, VulnScanRun
from tests.server.vuln_fixtures import CDX_YOCTO, TRACKER, YOCTO, Lab, make_lab

EPSS = Path(__file__).parents[1] / "cra/data/epss-excerpt.csv"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return make_lab(tmp_path / "lab")


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "mirror"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _setup(tmp_path: Path, base_url: str) -> tuple[Database, Jobs, VulnService, int]:
    url = f"sqlite:///{tmp_path / 'bulkhead.db'}"
    migrate(url)
    db = Database(url)
    store = FsStore(tmp_path / "artifacts")
    sources = {n: dataclasses.replace(s, url=f"{base_url}/{s.filename}") if s.url else s for n, s in FEEDS.items()}
    vulns = VulnService(db, store, tmp_path, sources)
    jobs = Jobs(Settings(data_dir=tmp_path), RolloutService(db), None, vulns)
    # release 1: the beaglebone subset; release 2: the same without the kernel (a release the kernel CVEs do not touch)
    doc = json.loads(CDX_YOCTO.read_text())
    doc["components"] = [c for c in doc["components"] if c["bom-ref"] != "kernel"]
    doc["vulnerabilities"] = [v for v in doc["vulnerabilities"] if v["affects"][0]["ref"] != "kernel"]
    with db.session() as s:
        t = Tenant(name="jobs")
        s.add(t)
        s.flush()
        for version, data in (("1", CDX_YOCTO.read_bytes()), ("2", json.dumps(doc).encode())):
            fd, path = store.new_upload()
            with open(fd, "wb") as f:
                f.write(data)
            sha = hashlib.sha256(data).hexdigest()
            store.commit(path, sha)
            rel = Release(tenant_id=t.id, compatible=YOCTO, version=version, format="plain", sha256="0" * 64, size=1, info={})
            s.add(rel)
            s.flush()
            s.add(
                ReleaseSbom(release_id=rel.id, format="cyclonedx", spec_version="1.5", sha256=sha, size=len(data), components=3)
            )
        s.add(Device(tenant_id=t.id, name="y1", compatible=YOCTO, os_version="1", reported={"os_version": "1"}))
        tid = t.id
    return db, jobs, vulns, tid


def _finding(db: Database, cve: str) -> VulnFinding:
    with db.session() as s:
        f = s.scalar(select(VulnFinding).where(VulnFinding.cve == cve, VulnFinding.profile_id.is_(None)))
        assert f is not None
        s.expunge(f)
        return f


def test_schedules(tmp_path: Path) -> None:
    _, jobs, _, _ = _setup(tmp_path, "http://127.0.0.1:9")
    due = {name: task.task_class() for name, task in jobs.vuln_tasks.items()}
    at = functools.partial(dt.datetime, 2026, 12, 3)
    assert due["daily"].validate_datetime(at(3, 17)) and not due["daily"].validate_datetime(at(4, 17))
    assert all(due["kev"].validate_datetime(at(h, 7)) for h in range(24)) and not due["kev"].validate_datetime(at(5, 8))
    assert due["devices"].validate_datetime(at(5, 10)) and not due["devices"].validate_datetime(at(5, 11))


def test_daily_sync_and_rescan_hourly_kev_event_and_new_inventories(
    tmp_path: Path, lab: Lab, feed_server: tuple[Path, str]
) -> None:
    mirror, base = feed_server
    shutil.copy(lab.feeds["kev-without-36971"], mirror / "cisa-kev.json")
    shutil.copy(TRACKER, mirror / "debian-tracker.json")
    shutil.copy(EPSS, mirror / "first-epss.csv.gz")  # served plain: the parser reads gzip or plain
    db, jobs, vulns, tid = _setup(tmp_path, base)
    import_file(CVE_RECORDS, vulns.feeds.directory, lab.feeds["cve-records"])  # import only

    jobs.vuln_tasks["daily"].func()
    status = {f["name"]: f for f in vulns.feeds.status()}
    assert all(status[n]["ok"] and status[n]["origin"] == "http" for n in ("cisa-kev", "debian-tracker", "first-epss"))
    with db.session() as s:
        [run] = s.scalars(select(VulnScanRun).where(VulnScanRun.kind == "full")).all()
        assert run.actor == "system:vuln-jobs" and run.counts["releases"] == 2 and run.counts["profiles"] == 1
        # the fix of the kernel CVE: release 2, which has no finding for it at all (no kernel in its SBOM)
        fix = cve_exposure(s, tid, "CVE-2024-36971")["fix"]["releases"]
        assert [(f["compatible"], f["version"]) for f in fix] == [(YOCTO, "2")]
        assert run.feeds["cisa-kev"]["sha256"] == hashlib.sha256(lab.feeds["kev-without-36971"].read_bytes()).hexdigest()
    assert _finding(db, "CVE-2024-36971").kev is False and _finding(db, "CVE-2024-36971").status == "affected"
    assert _finding(db, "CVE-2024-1086").epss == pytest.approx(0.83371)

    shutil.copy(lab.feeds["cisa-kev"], mirror / "cisa-kev.json")  # CISA adds CVE-2024-36971
    later = (mirror / "cisa-kev.json").stat().st_mtime + 60  # Last-Modified has whole seconds: make it newer
    os.utime(mirror / "cisa-kev.json", (later, later))
    jobs.vuln_tasks["kev"].func()
    found = _finding(db, "CVE-2024-36971")
    assert found.kev is True and found.kev_date == dt.date(2024, 8, 7)
    with db.session() as s:
        [event] = s.scalars(select(AuditEvent).where(AuditEvent.action == "vuln.kev_exploited")).all()
        assert (event.tenant_id, event.subject, event.details["devices"]) == (tid, "CVE-2024-36971", 1)
    jobs.vuln_tasks["kev"].func()  # the next hour: nothing new, no second event
    with db.session() as s:
        assert len(s.scalars(select(AuditEvent).where(AuditEvent.action == "vuln.kev_exploited")).all()) == 1

    (mirror / "debian-tracker.json").unlink()  # the tracker fails: its last good copy stays and says why
    jobs.vuln_tasks["daily"].func()
    tracker = next(f for f in vulns.feeds.status() if f["name"] == "debian-tracker")
    assert tracker["has_data"] and not tracker["ok"] and "404" in tracker["last_error"]
    with db.session() as s:  # and the tenant, scanned moments ago, is not scanned again (one run per day, however
        # many server processes scheduled the job)
        assert len(s.scalars(select(VulnScanRun).where(VulnScanRun.kind == "full")).all()) == 1

    with db.session() as s:  # the device installs a newer openssl: the ten-minute job matches its new inventory
        dev = s.scalar(select(Device).where(Device.name == "y1"))
        assert dev is not None
        dev.reported = {"os_version": "1", "packages": {"format": "opkg", "count": 1, "packages": {"libcrypto3": "3.2.1-r0"}}}
        dev.reported_sha256 = "1" * 64
    jobs.vuln_tasks["devices"].func()
    with db.session() as s:
        last = s.scalars(select(VulnScanRun).where(VulnScanRun.kind == "devices").order_by(VulnScanRun.id.desc())).first()
        assert last is not None and last.counts["profiles"] == 1 and last.counts["devices_mapped"] == 1
        statuses = {
            f.status
            for f in s.scalars(select(VulnFinding).where(VulnFinding.cve == "CVE-2024-5535", VulnFinding.profile_id.is_not(None)))
        }
    assert statuses == {"affected"}
    json.dumps(status)  # the feed status is plain JSON for the API


def test_a_scan_lost_with_a_stopped_server_is_marked_failed_not_left_queued(tmp_path: Path) -> None:
    db, _jobs, vulns, tid = _setup(tmp_path, "http://127.0.0.1:9")
    now = dt.datetime.now(dt.UTC)
    with db.session() as s:
        runs = [
            VulnScanRun(tenant_id=tid, kind="full", actor="t", status=status, started_at=now - age)
            for status, age in (
                ("queued", dt.timedelta(hours=7)),  # its job was lost: the server stopped
                ("running", dt.timedelta(hours=8)),  # the server stopped mid-scan
                ("queued", dt.timedelta(minutes=5)),  # waiting for a busy queue: left alone
                ("done", dt.timedelta(days=2)),
            )
        ]
        s.add_all(runs)
        s.flush()
        ids = [r.id for r in runs]
    assert vulns.fail_abandoned() == 2
    with db.session() as s:
        got = [s.get(VulnScanRun, i) for i in ids]
        assert [r.status for r in got if r] == ["failed", "failed", "queued", "done"]
        assert all("abandoned" in (r.error or "") and r.finished_at for r in got[:2] if r)
    assert vulns.fail_abandoned() == 0
    db.dispose()
