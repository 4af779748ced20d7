"""Scans: a tenant's releases and device profiles matched against the feeds, findings replaced, the run kept.

A *full* scan maps devices whose inventory, OS version or groups changed to their profile, then re-matches every
release with an SBOM and every profile in use. A *devices* scan only maps changed devices and matches the profiles
no scan has seen yet (cheap: run often). KEV updates are in vuln_kev. Every run is a `vuln_scan_runs` row with the
feed versions it read and its counts (what was known when).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, cast, delete, func, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bulkhead.cra.errors import CraError
from bulkhead.cra.model import Component

from ..db import Database
from ..models import App, Device, Release, ReleaseSbom, Tenant, utcnow
from ..store import ArtifactStore
from ..vuln_feeds import FeedStore, Knowledge
from ..vuln_models import AppSbom, VulnCve, VulnDeviceProfile, VulnFinding, VulnProfile, VulnScanRun
from .vex_apply import VexIndex
from .vex_sbom import import_sbom_statements
from .vuln_apps import app_finding_rows
from .vuln_country import device_country
from .vuln_match import debian_releases, finding_rows, inventory_key, match, profile_components, release_components

__all__ = ["Scanner", "apply_vex", "lock_tenant", "run_json"]

log = logging.getLogger(__name__)
_BATCH = 500
_CHUNK = 50  # releases or profiles matched and written together


def run_json(r: VulnScanRun) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": r.kind,
        "actor": r.actor,
        "started_at": r.started_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "feeds": r.feeds,
        "counts": r.counts,
        "status": r.status,
        "error": r.error,
    }


def lock_tenant(s: Session, tid: int) -> None:
    """Serialise the writers of one tenant's findings (scans, KEV updates, VEX statements) until the transaction ends:
    a row lock on the tenant on PostgreSQL; SQLite serialises every write transaction anyway."""
    s.execute(select(Tenant.id).where(Tenant.id == tid).with_for_update())


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _vex_map(s: Session, tid: int) -> VexIndex:
    return VexIndex.of_tenant(s, tid)


def apply_vex(rows: list[dict[str, Any]], compatible: str, vex: VexIndex) -> None:
    """Set each row's effective status from the VEX statement that applies to it (vex_apply has the rules)."""
    vex.apply(rows, compatible)


@dataclass(frozen=True)
class _Plan:
    """What a scan matches, read in its first short transaction."""

    run_id: int
    mapped: int
    releases: dict[int, str]  # release id -> compatible: the releases whose own findings are re-matched
    shas: dict[int, list[str]]  # release id -> its SBOMs (those of the releases above and of the profiles' releases)
    profiles: dict[int, tuple[str, int | None, dict[str, Any]]]  # profile id -> compatible, release id, inventory
    apps: dict[tuple[str, str], str]  # (app, version) -> its SBOM, for the apps the profiles above run


class Scanner:
    def __init__(self, db: Database, store: ArtifactStore, feeds: FeedStore) -> None:
        self.db, self.store, self.feeds = db, store, feeds

    # -- device profiles -------------------------------------------------------------------------------------
    def map_devices(self, s: Session, tid: int) -> int:
        """Give every device whose inventory, OS version or groups changed since it was mapped its profile (and the
        mapping its groups); returns how many devices were (re)mapped."""
        D, P = Device, VulnDeviceProfile
        groups = func.coalesce(cast(D.groups, Text), "[]").label("groups")
        country = device_country().label("country")
        stale = s.execute(
            select(D.id, D.compatible, D.os_version, D.reported_sha256, groups, country)
            .outerjoin(P, P.device_id == D.id)
            .where(
                D.tenant_id == tid,
                or_(
                    P.device_id.is_(None),
                    P.reported_sha256 != func.coalesce(D.reported_sha256, ""),
                    P.os_version != func.coalesce(D.os_version, ""),
                    P.groups != groups,
                    P.country != country,
                ),
            )
        ).all()
        profiles = {
            (p.compatible, p.os_version, p.inventory_sha256): p.id
            for p in s.scalars(select(VulnProfile).where(VulnProfile.tenant_id == tid))
        }
        for i in range(0, len(stale), _BATCH):
            batch = stale[i : i + _BATCH]
            ids = [r.id for r in batch]
            reported: dict[int, Any] = {r[0]: r[1] for r in s.execute(select(D.id, D.reported).where(D.id.in_(ids)))}
            rows = []
            for r in batch:
                text, part = inventory_key(reported.get(r.id) or {})
                key = (r.compatible, r.os_version or "", hashlib.sha256(text.encode()).hexdigest() if text else "")
                pid = profiles.get(key)
                if pid is None:
                    rel = s.scalar(
                        select(Release.id).where(
                            Release.tenant_id == tid, Release.compatible == key[0], Release.version == key[1]
                        )
                    )
                    prof = VulnProfile(
                        tenant_id=tid,
                        compatible=key[0],
                        os_version=key[1],
                        inventory_sha256=key[2],
                        inventory=part,
                        release_id=rel,
                    )
                    s.add(prof)
                    s.flush()
                    pid = profiles[key] = prof.id
                rows.append(
                    {
                        "device_id": r.id,
                        "tenant_id": tid,
                        "profile_id": pid,
                        "reported_sha256": r.reported_sha256 or "",
                        "os_version": r.os_version or "",
                        "groups": r.groups,
                        "country": r.country,
                    }
                )
            s.execute(delete(P).where(P.device_id.in_(ids)))
            s.execute(insert(P), rows)
        return len(stale)

    # -- scans -----------------------------------------------------------------------------------------------
    def _components(self, release_id: int, shas: Sequence[str]) -> list[Component]:
        docs = []
        for sha in shas:
            try:
                with self.store.path(sha).open("rb") as f:
                    docs.append(json.load(f))
            except (OSError, ValueError) as e:
                log.warning("release %s: SBOM %s cannot be read: %s", release_id, sha, e)
        try:
            return release_components(docs)
        except CraError as e:
            log.warning("release %s: SBOM not readable for matching: %s", release_id, e)
            return []

    def _app_components(self, key: tuple[str, str], sha: str) -> list[Component]:
        try:
            with self.store.path(sha).open("rb") as f:
                return release_components([json.load(f)])
        except (OSError, ValueError, CraError) as e:
            log.warning("app %s %s: SBOM %s not readable for matching: %s", *key, sha, e)
            return []

    def queue(self, tid: int, actor: str, kind: str) -> dict[str, Any]:
        """A run in state `queued`, for a job to run with `scan(..., run_id=)`."""
        with self.db.session() as s:
            run = VulnScanRun(tenant_id=tid, kind=kind, actor=actor, feeds={}, counts={}, status="queued")
            s.add(run)
            s.flush()
            return run_json(run)

    def fail(self, run_id: int, error: str) -> None:
        with self.db.session() as s:
            run = s.get(VulnScanRun, run_id)
            if run is not None:
                run.status, run.error, run.finished_at = "failed", error[:2000], utcnow()

    def scan(
        self, tid: int, actor: str, kind: str = "full", min_gap: dt.timedelta | None = None, run_id: int | None = None
    ) -> dict[str, Any] | None:
        """Scan one tenant (`full` or `devices`) and return the run; None when `min_gap` is given and a run of this
        kind started less than that ago (a periodic job that several server processes each scheduled runs once).

        No transaction is open while SBOMs and feeds are parsed and matched (on SQLite every transaction holds the
        database's write lock): a short one plans (maps devices, starts the run), then releases and profiles are
        matched and written _CHUNK at a time (so a fleet of many inventories never holds all its findings in memory),
        and a last one closes the run. `run_id`: a queued run (see `queue`) that this scan is; a scan that fails
        marks its run failed with the reason."""
        plan = self._plan(tid, actor, kind, min_gap, run_id)
        if plan is None:
            return None
        try:
            return self._scan(tid, plan)
        except Exception as e:
            self.fail(plan.run_id, f"{type(e).__name__}: {e}")
            raise

    def _scan(self, tid: int, plan: _Plan) -> dict[str, Any]:
        comps = {rid: self._components(rid, shas) for rid, shas in plan.shas.items()}
        if plan.releases:  # what the SBOMs say (Yocto CVE_STATUS, VEX) as VEX records, under any person's statement
            with self.db.session() as s:
                lock_tenant(s, tid)
                import_sbom_statements(s, tid, {rid: (plan.releases[rid], comps.get(rid, [])) for rid in plan.releases})
        app_comps = {key: self._app_components(key, sha) for key, sha in plan.apps.items()}

        def of_profile(pid: int) -> list[Component]:
            _, rel, inv = plan.profiles[pid]
            return profile_components(comps.get(rel or 0, []), inv)

        codenames = set().union(*(debian_releases(c) for c in comps.values()))
        for pid in plan.profiles:  # the profiles' components are made again per chunk below: only their codenames stay
            codenames |= debian_releases(of_profile(pid))
        k = self.feeds.knowledge(codenames)
        counts = {"releases": 0, "profiles": 0, "devices_mapped": plan.mapped, "findings": 0, "affected": 0, "kev": 0}
        releases, profiles = sorted(plan.releases), sorted(plan.profiles)
        for i in range(0, len(releases), _CHUNK):
            rows = {rid: finding_rows(match(comps.get(rid, []), k), k) for rid in releases[i : i + _CHUNK]}
            self._write(tid, plan, k, rows, {}, counts)
        for i in range(0, len(profiles), _CHUNK):
            rows = {
                pid: finding_rows(match(of_profile(pid), k), k)
                + app_finding_rows(plan.profiles[pid][2].get("apps") or {}, app_comps, k)
                for pid in profiles[i : i + _CHUNK]
            }
            self._write(tid, plan, k, {}, rows, counts)
        with self.db.session() as s:
            run = s.get(VulnScanRun, plan.run_id)
            assert run is not None
            run.feeds, run.counts, run.finished_at, run.status = k.versions, counts, utcnow(), "done"
            s.flush()
            return run_json(run)

    def _plan(self, tid: int, actor: str, kind: str, min_gap: dt.timedelta | None, run_id: int | None = None) -> _Plan | None:
        with self.db.session() as s:
            lock_tenant(s, tid)
            if min_gap is not None:
                last = s.scalar(
                    select(func.max(VulnScanRun.started_at)).where(VulnScanRun.tenant_id == tid, VulnScanRun.kind == kind)
                )
                if last is not None and _aware(last) > utcnow() - min_gap:
                    return None
            mapped = self.map_devices(s, tid)
            # Profiles no device uses any more go (their findings with them).
            s.execute(
                delete(VulnProfile).where(
                    VulnProfile.tenant_id == tid,
                    ~select(VulnDeviceProfile.device_id).where(VulnDeviceProfile.profile_id == VulnProfile.id).exists(),
                )
            )
            profiles = list(s.scalars(select(VulnProfile).where(VulnProfile.tenant_id == tid)))
            if kind == "full":
                for p in profiles:  # a release uploaded after the devices reported its version
                    if p.release_id is None:
                        p.release_id = s.scalar(
                            select(Release.id).where(
                                Release.tenant_id == tid, Release.compatible == p.compatible, Release.version == p.os_version
                            )
                        )
                todo = profiles
            else:
                todo = [p for p in profiles if p.scanned_run_id is None]
            q = select(ReleaseSbom.release_id, ReleaseSbom.sha256, Release.compatible).join(
                Release, Release.id == ReleaseSbom.release_id
            )
            q = q.where(Release.tenant_id == tid).order_by(ReleaseSbom.release_id, ReleaseSbom.format)
            if kind != "full":
                q = q.where(ReleaseSbom.release_id.in_({p.release_id for p in todo if p.release_id is not None}))
            shas: dict[int, list[str]] = {}
            releases: dict[int, str] = {}
            for rid, sha, compatible in s.execute(q):
                shas.setdefault(rid, []).append(sha)
                if kind == "full":
                    releases[rid] = compatible
            wanted = {(a, v) for p in todo for a, v in ((p.inventory or {}).get("apps") or {}).items()}
            apps: dict[tuple[str, str], str] = {}
            if wanted:
                q2 = select(App.name, App.version, AppSbom.sha256).join(AppSbom, AppSbom.app_id == App.id)
                for name, version, sha in s.execute(q2.where(App.tenant_id == tid)):
                    if (name, version) in wanted:
                        apps[(name, version)] = sha
            run = s.get(VulnScanRun, run_id) if run_id is not None else None
            if run is None:
                run = VulnScanRun(tenant_id=tid, kind=kind, actor=actor, feeds={}, counts={})
                s.add(run)
            run.status, run.started_at = "running", utcnow()
            s.flush()
            return _Plan(
                run.id,
                mapped,
                releases,
                shas,
                {p.id: (p.compatible, p.release_id, dict(p.inventory or {})) for p in todo},
                apps,
            )

    def _write(
        self,
        tid: int,
        plan: _Plan,
        k: Knowledge,
        release_rows: dict[int, list[dict[str, Any]]],
        profile_rows: dict[int, list[dict[str, Any]]],
        counts: dict[str, int],
    ) -> None:
        """Replace the findings of some releases and profiles in one transaction (with the VEX statements as they are
        now: one set while matching applies)."""
        with self.db.session() as s:
            lock_tenant(s, tid)
            vex = _vex_map(s, tid)
            existing = set(s.scalars(select(Release.id).where(Release.tenant_id == tid, Release.id.in_(release_rows))))
            for rid, rows in release_rows.items():
                if rid not in existing:
                    continue  # deleted while it was matched
                s.execute(delete(VulnFinding).where(VulnFinding.release_id == rid, VulnFinding.profile_id.is_(None)))
                self._insert(s, tid, plan.releases[rid], rid, None, rows, vex, plan.run_id, counts)
                counts["releases"] += 1
            profiles = {p.id: p for p in s.scalars(select(VulnProfile).where(VulnProfile.id.in_(profile_rows)))}
            for pid, rows in profile_rows.items():
                p = profiles.get(pid)
                if p is None:
                    continue  # no device uses it any more
                s.execute(delete(VulnFinding).where(VulnFinding.profile_id == pid))
                self._insert(s, tid, p.compatible, None, pid, rows, vex, plan.run_id, counts)  # scope: the profile only
                p.scanned_run_id = plan.run_id
                counts["profiles"] += 1
            self._describe(s, {r["cve"] for rows in (*release_rows.values(), *profile_rows.values()) for r in rows}, k)

    @staticmethod
    def _describe(s: Session, cves: set[str], k: Knowledge) -> None:
        """Keep the description and dates of the CVEs found (the API shows them without reading the feeds)."""
        rows = []
        for cve in sorted(cves):
            records = k.records.get(cve, [])
            if not records:
                continue
            description = next((r.description for r in records if r.description), None)
            published = next((r.published for r in records if r.published), None)
            updated = max((r.updated for r in records if r.updated), default=None)
            rows.append({"cve": cve, "description": description, "published": published, "updated": updated})
        upsert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        for i in range(0, len(rows), _BATCH):
            stmt = upsert(VulnCve).values(rows[i : i + _BATCH])
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=[VulnCve.cve],
                    set_={"description": stmt.excluded.description, "published": stmt.excluded.published,
                          "updated": stmt.excluded.updated},
                )
            )  # fmt: skip

    @staticmethod
    def _insert(
        s: Session,
        tid: int,
        compatible: str,
        release_id: int | None,
        profile_id: int | None,
        rows: list[dict[str, Any]],
        vex: VexIndex,
        run_id: int,
        counts: dict[str, int],
    ) -> None:
        rows = [dict(r) for r in rows]
        apply_vex(rows, compatible, vex)
        for row in rows:
            row.update(tenant_id=tid, release_id=release_id, profile_id=profile_id, compatible=compatible, run_id=run_id)
            row.setdefault("vex_id", None)
            row.setdefault("app", None)
            row.setdefault("app_version", None)
            counts["affected"] += row["status"] == "affected"
            counts["kev"] += bool(row["kev"])
        counts["findings"] += len(rows)
        if rows:
            s.execute(insert(VulnFinding), rows)
