"""Vulnerability monitoring as the API and the jobs use it: feeds, scans, the CVE list and exposure, VEX.

Authorization lives here: viewers read; operators import and sync feeds and scan; operators and admins set VEX
statements (audited as `vex.set` / `vex.delete` / `vex.import`; exports as `vex.export`). Feeds are global to the
server (`<data dir>/feeds`); scans, findings and statements belong to one tenant. The work itself is in vuln_scan
(matching and storing), vuln_exposure (queries) and vex (statements).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bulkhead.cra.feed_errors import FeedError
from bulkhead.cra.feed_state import load_state
from bulkhead.cra.feeds import FeedSource, fetch, import_file

from ..db import Database
from ..errors import Invalid, NotFound, Unprocessable
from ..feed_replica import FeedReplica
from ..heap import paused_gc
from ..models import Tenant
from ..store import ArtifactStore
from ..vuln_feeds import FeedStore
from ..vuln_models import VexStatement, VulnCve, VulnScanRun
from . import audit, vex, vuln_history
from .auth import Principal
from .keyset import Page, Paged, keyset, paged
from .vuln_exposure import Scope, cve_devices, cve_exposure, cve_page, vex_json
from .vuln_kev import apply_kev
from .vuln_scan import KINDS, Scanner, run_json
from .vuln_summary import Exposure, exposure

__all__ = ["MAX_FEED_BYTES", "VulnService"]

log = logging.getLogger(__name__)

MAX_FEED_BYTES = 2 << 30  # an imported feed file (the Debian tracker is about 70 MB, a CVE bulk export more)
SYSTEM_ACTOR = "system:vuln-jobs"
# A periodic scan skips a tenant whose last run of the kind started less than this ago.
# A run queued or running this long after it started was lost with a stopped server (see fail_abandoned).
ABANDONED_AFTER = dt.timedelta(hours=6)
_MIN_GAP = {"full": dt.timedelta(hours=1), "incremental": dt.timedelta(0), "devices": dt.timedelta(minutes=5)}


def _cve(cve: str) -> str:
    value = cve.strip().upper()
    if not value or len(value) > 64 or not value.replace("-", "").replace("_", "").isalnum():
        raise Invalid(f"{cve!r} is not a vulnerability id such as CVE-2024-3094")
    return value


class VulnService:
    def __init__(
        self,
        db: Database,
        store: ArtifactStore,
        data_dir: Path,
        sources: Mapping[str, FeedSource] | None = None,
        shared: bool = False,
    ) -> None:
        """`shared`: several hosts share the database and the store, and so the feeds (feed_replica.py)."""
        self.db = db
        replica = FeedReplica(db, store, data_dir / "feeds") if shared else None
        self.feeds = FeedStore(data_dir / "feeds", sources, replica)
        self.scanner = Scanner(db, store, self.feeds)
        # Puts a queued scan run (its id) on the job queue; set by the job queue. None: scans run in the request.
        self.enqueue_scan: Callable[[int], Any] | None = None

    # -- feeds -------------------------------------------------------------------------------------------------
    def feed_status(self, who: Principal) -> list[dict[str, Any]]:
        who.require("viewer")
        return self.feeds.status()

    def import_feed(self, who: Principal, name: str, path: Path) -> dict[str, Any]:
        """Take a feed file brought in by hand (air-gapped sites); a refused file leaves the held copy in place.
        An imported KEV catalogue is applied to every tenant's findings at once. The feeds are every tenant's data:
        the server administrator's to change, never one tenant's."""
        who.require_system()
        source = self.feeds.source(name)
        if source is None:
            raise NotFound(f"unknown feed {name!r}; the feeds are {', '.join(self.feeds.sources)}")
        try:
            with self.feeds.changing(), paused_gc():  # parsing a feed builds a million acyclic objects
                import_file(source, self.feeds.directory, path)
        except FeedError as e:
            raise Unprocessable(str(e)) from None
        with self.db.session() as s:
            audit.record(s, who, "vuln.feed_import", name)
        if name == "cisa-kev":  # global data: every tenant's findings learn it now, not at the next hourly run
            self.kev_all()
        return next(st for st in self.feeds.status() if st["name"] == name)

    def sync(self, who: Principal | None = None, rescan: bool = False) -> list[dict[str, Any]]:
        """Fetch every fetchable feed now (conditional GETs); failures are in each feed's state, never raised. With
        `rescan` (the API's sync), every tenant is re-matched incrementally when a feed matching reads changed."""
        if who is not None:
            who.require_system()
        changed = False
        with self.feeds.changing():  # each fetch goes on from the cluster's newest copy (its validators, its deltas)
            for source in self.feeds.sources.values():
                if source.url:
                    before = load_state(self.feeds.directory, source.name).sha256
                    with paused_gc():
                        state = fetch(source, self.feeds.directory)
                    if state.last_error:
                        log.warning("feed %s: %s", source.name, state.last_error)
                    changed |= state.sha256 != before and source.name != "cisa-kev"  # KEV: vuln_kev's hourly update
        if rescan and changed:
            self.scan_all("incremental")
        return self.feeds.status()

    def sync_kev(self) -> None:
        with self.feeds.changing():
            fetch(self.feeds.sources["cisa-kev"], self.feeds.directory)

    # -- scans -------------------------------------------------------------------------------------------------
    def scan(self, who: Principal, kind: str = "full") -> dict[str, Any]:
        """Queue a scan of the caller's tenant as a job and return its run (state `queued`); without a job queue the
        scan runs now and the run returned is done."""
        who.require("operator")
        if kind not in KINDS:
            raise Invalid(f"scan kind must be full, incremental or devices, not {kind!r}")
        tid = who.require_tenant()
        actor = f"{who.kind}:{who.name}"
        run = self.scanner.queue(tid, actor, kind)
        if self.enqueue_scan is None:
            return self.run_queued(run["id"]) or run
        try:
            self.enqueue_scan(run["id"])
        except Exception as e:
            self.scanner.fail(run["id"], f"the job queue refused the scan: {e}")
            raise
        return run

    def run_queued(self, run_id: int) -> dict[str, Any] | None:
        """Run a queued scan (the job); the run is marked failed with the reason if it fails."""
        with self.db.session() as s:
            run = s.get(VulnScanRun, run_id)
            if run is None or run.status != "queued":
                return None  # gone with its tenant, or run already (a job delivered twice)
            tid, actor, kind = run.tenant_id, run.actor, run.kind
        try:
            out = self.scanner.scan(tid, actor, kind, run_id=run_id)
            apply_kev(self.db, self.feeds, tid, actor)
        except Exception as e:
            log.exception("vulnerability scan run %s failed", run_id)
            self.scanner.fail(run_id, f"{type(e).__name__}: {e}")
            return None
        return out

    def run(self, who: Principal, run_id: int) -> dict[str, Any]:
        """One scan run of the caller's tenant: its state (queued, running, done, failed with the reason), counts."""
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            run = s.get(VulnScanRun, run_id)
            if run is None or run.tenant_id != tid:
                raise NotFound(f"scan run {run_id} does not exist; list runs with 'bulkhead vuln scans'")
            return run_json(run)

    def _tenants(self) -> list[int]:
        with self.db.session() as s:
            return list(s.scalars(select(Tenant.id).order_by(Tenant.id)))

    def fail_abandoned(self, older_than: dt.timedelta = ABANDONED_AFTER) -> int:
        """Mark failed the runs still queued or running long after they started: their job was lost with a server
        that stopped (a scan of a large tenant takes minutes, not hours). Returns how many."""
        cutoff = dt.datetime.now(dt.UTC) - older_than
        with self.db.session() as s:
            runs = list(
                s.scalars(
                    select(VulnScanRun).where(VulnScanRun.status.in_(("queued", "running")), VulnScanRun.started_at < cutoff)
                )
            )
            for run in runs:
                run.status, run.finished_at = "failed", dt.datetime.now(dt.UTC)
                run.error = (
                    f"abandoned: still unfinished {older_than} after it started; the server stopped before it ran or "
                    "finished (ask for a new scan: bulkhead vuln scan)"
                )
            return len(runs)

    def scan_all(self, kind: str = "full") -> None:
        """Every tenant (the periodic jobs): a failure in one tenant is logged and the others still run. A tenant
        scanned the same way moments ago (another server process ran the same periodic job) is skipped."""
        for tid in self._tenants():
            try:
                self.scanner.scan(tid, SYSTEM_ACTOR, kind, min_gap=_MIN_GAP[kind])
                apply_kev(self.db, self.feeds, tid, SYSTEM_ACTOR)
            except Exception:
                log.exception("vulnerability scan of tenant %s failed", tid)

    def kev_all(self) -> None:
        for tid in self._tenants():
            try:
                apply_kev(self.db, self.feeds, tid, SYSTEM_ACTOR)
            except Exception:
                log.exception("KEV update of tenant %s failed", tid)

    def runs(self, who: Principal, page: Page) -> Paged[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            q = select(VulnScanRun).where(VulnScanRun.tenant_id == tid)
            rows = list(s.scalars(keyset(q, [VulnScanRun.id], page, descending=True)))
            return paged(rows, page, lambda r: (r.id,), run_json)

    # -- reads -------------------------------------------------------------------------------------------------
    def list_cves(self, who: Principal, scope: Scope, page: Page) -> Paged[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            return cve_page(s, tid, scope, page)

    def exposure_history(self, who: Principal, days: int) -> dict[str, Any]:
        """The exposure summary now and its samples over the last `days` (vuln_history.py), for a plot."""
        until = dt.datetime.now(dt.UTC)
        since = until - dt.timedelta(days=days)
        with self.db.session() as s:
            now = exposure(s, who)
            before, samples = vuln_history.history(s, who, since, until)
        return {
            "since": since.isoformat(),
            "now": {"at": until.isoformat(), **_summary(now)},
            "before": _sample_json(before) if before else None,
            "samples": [_sample_json(x) for x in samples],
        }

    def show(self, who: Principal, cve: str) -> dict[str, Any]:
        who.require("viewer")
        tid = who.require_tenant()
        cve = _cve(cve)
        with self.db.session() as s:
            out = cve_exposure(s, tid, cve)
            about = s.get(VulnCve, cve)
        out["description"] = about.description if about else None
        out["published"] = about.published.isoformat() if about and about.published else None
        return out

    def devices(self, who: Principal, cve: str, page: Page) -> Paged[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            return cve_devices(s, tid, _cve(cve), page)

    # -- VEX ---------------------------------------------------------------------------------------------------
    def vex_set(
        self,
        who: Principal,
        compatible: str,
        cve: str,
        component: str | None,
        status: str,
        justification: str | None,
        impact: str | None,
        action: str | None,
        component_version: str | None = None,
        purl: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        who.require("operator")
        tid = who.require_tenant()
        cve = _cve(cve)
        actor = f"{who.kind}:{who.name}"
        with self.db.session() as s:
            out, created = vex.set_statement(
                s, tid, actor, compatible, cve, component, status, justification, impact, action, component_version, purl
            )
            audit.record(
                s, who, "vex.set", f"{compatible} {cve}", component=out["component"],
                component_version=out["component_version"], status=status, justification=justification,
            )  # fmt: skip
            vuln_history.record(s, tid, "vex")
            return out, created

    def vex_import(self, who: Principal, doc: Any, compatible: str | None, fmt: str | None = None) -> list[dict[str, Any]]:
        """Every statement of an OpenVEX or CycloneDX VEX document (`fmt`, else detected), all or none (audited once,
        `vex.import`)."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            found, out = vex.import_document(s, tid, f"{who.kind}:{who.name}", doc, compatible, fmt)
            products = sorted({v["compatible"] for v in out})
            ident = doc.get("@id") or doc.get("serialNumber")
            audit.record(s, who, "vex.import", ", ".join(products)[:256], statements=len(out), format=found, document=ident)
            vuln_history.record(s, tid, "vex import")
            return out

    def vex_delete(self, who: Principal, vex_id: int) -> None:
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            out = vex.delete_statement(s, tid, vex_id)
            audit.record(s, who, "vex.delete", f"{out['compatible']} {out['cve']}", component=out["component"])
            vuln_history.record(s, tid, "vex withdrawn")

    def vex_list(self, who: Principal, compatible: str | None, cve: str | None, page: Page) -> Paged[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            q = select(VexStatement).where(VexStatement.tenant_id == tid)
            if compatible:
                q = q.where(VexStatement.compatible == compatible)
            if cve:
                q = q.where(VexStatement.cve == _cve(cve))
            rows = list(s.scalars(keyset(q, [VexStatement.id], page)))
            return paged(rows, page, lambda v: (v.id,), vex_json)

    def vex_export(self, who: Principal, compatible: str | None, fmt: str = "openvex") -> dict[str, Any]:
        """The statements as one OpenVEX 0.2.0 or CycloneDX 1.6 VEX document (audited, `vex.export`)."""
        who.require("viewer")
        tid = who.require_tenant()
        if fmt not in vex.FORMATS:
            raise Invalid(f"format must be one of {', '.join(vex.FORMATS)}, not {fmt!r}")
        with self.db.session() as s:
            actor = f"{who.kind}:{who.name}"
            doc = vex.openvex(s, tid, compatible, actor) if fmt == "openvex" else vex.cyclonedx(s, tid, compatible, actor)
            n = len(doc["statements"] if fmt == "openvex" else doc.get("vulnerabilities", []))
            audit.record(s, who, "vex.export", compatible or "*", format=fmt, statements=n)
            return doc


def _summary(e: Exposure) -> dict[str, Any]:
    return {"cves": e.cves, "kev": e.kev, "devices": e.devices, "by_severity": dict(e.by_severity)}


def _sample_json(x: vuln_history.Sample) -> dict[str, Any]:
    return {"at": x.at.isoformat(), "cause": x.cause, "cves": x.cves, "kev": x.kev, "devices": x.devices,
            "by_severity": x.by_severity}  # fmt: skip
