"""Scans: a tenant's releases and device profiles matched against the feeds, findings replaced, the run kept.

A *full* scan maps devices whose inventory, OS version or groups changed to their profile, then re-matches every
release with an SBOM and every profile in use. An *incremental* scan re-matches only what changed since the last
full or incremental run: releases whose SBOMs are new and profiles no scan has seen (or whose release is new) are
matched whole; every other release and profile is matched against the vulnerabilities whose feed data changed only
(new, gone or different digest, `bulkhead.cra.cve_digest`, compared with `vuln_cve_digests`), and its findings of
those vulnerabilities replaced; every other finding stays as it is. Its result equals a full run's. A full run
matches everything too, but writes only what changed: per release and profile it keeps a digest of the stored
findings of each vulnerability id (`id_digests`, migration 0018) and deletes and writes only the rows of the ids whose
digest differs or that an incremental run rewrote since (`stale_ids`; all rows when the digests are unknown). A *devices*
scan only maps changed devices and matches the profiles no scan has seen yet (cheap: run often). KEV updates are in
vuln_kev. Every run is a `vuln_scan_runs` row with the feed versions it read and its counts (what was known when).

Parsed SBOM components are kept per process by the SBOMs' sha256s (an SBOM never changes under its sha256), so a
re-scan matches without parsing SBOMs again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, delete, func, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, undefer

from bulkhead.cra.cve_digest import changed_ids, cve_digests, osv_digests, record_digests, tracker_digests
from bulkhead.cra.errors import CraError
from bulkhead.cra.model import Component, Finding

from ..db import Database
from ..models import App, Device, DeviceInventory, Release, ReleaseSbom, Tenant, utcnow
from ..store import ArtifactStore
from ..vuln_feeds import FeedStore, Knowledge
from ..vuln_models import AppSbom, VulnCve, VulnDeviceProfile, VulnFinding, VulnProfile, VulnScanRun
from ..vuln_state_models import VulnCveDigest, VulnProfileGroups, VulnReleaseScan
from . import vuln_history
from .vex_apply import VexIndex
from .vex_sbom import import_sbom_statements
from .vuln_apps import app_finding_rows
from .vuln_country import device_country
from .vuln_match import (
    debian_releases,
    finding_rows,
    inventory_key,
    match,
    product_index,
    profile_components,
    release_components,
    restricted,
)
from .vuln_rows import (
    add_stale,
    copy_in,
    dump_digests,
    id_digests,
    load_digests,
    load_stale,
    store_findings,
)

__all__ = ["KINDS", "Scanner", "apply_vex", "lock_tenant", "run_json"]

log = logging.getLogger(__name__)
_BATCH = 500
_CHUNK = 50  # releases or profiles matched and written together
_CACHED_SBOMS = 1024  # releases' parsed components kept per process
# An incremental run re-matches at most this many changed vulnerabilities; beyond, it matches everything (as fast,
# and its result is the same).
_MAX_CHANGED = 5000
KINDS = ("full", "incremental", "devices")


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
    a row lock on the tenant on PostgreSQL (FOR NO KEY UPDATE: every insert of a row that names the tenant takes a
    key-share lock on it, which FOR UPDATE would block for the whole scan: the fleet's reports stalled for as long
    as a scan mapped 100,000 devices); SQLite serialises every write transaction anyway."""
    s.execute(select(Tenant.id).where(Tenant.id == tid).with_for_update(key_share=True))


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
    # Incremental runs: the releases and profiles re-matched for the changed vulnerabilities only.
    delta_releases: dict[int, str] = field(default_factory=dict)
    delta_profiles: dict[int, tuple[str, int | None, dict[str, Any]]] = field(default_factory=dict)
    digests: dict[str, str] | None = None  # full and incremental runs: what the findings were matched against
    apps: dict[tuple[str, str], str] = field(default_factory=dict)  # (app, version) -> its SBOM, for the profiles' apps


class Scanner:
    def __init__(self, db: Database, store: ArtifactStore, feeds: FeedStore) -> None:
        self.db, self.store, self.feeds = db, store, feeds
        self._lock = threading.Lock()
        self._parsed: OrderedDict[tuple[str, ...], list[Component]] = OrderedDict()
        self._digest_cache: dict[str, tuple[object, Any]] = {}
        self._described: dict[str, tuple[object, ...]] = {}

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
            inv = DeviceInventory
            found = s.execute(select(inv.device_id, inv.reported).where(inv.device_id.in_(ids)))
            reported: dict[int, Any] = {device_id: r for device_id, r in found}
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

    @staticmethod
    def _count_groups(s: Session, tid: int) -> None:
        """Count the tenant's devices per profile and group list as now mapped (one set-based statement)."""
        P, G = VulnDeviceProfile, VulnProfileGroups
        s.execute(delete(G).where(G.tenant_id == tid))
        counted = select(P.tenant_id, P.profile_id, P.groups, func.count()).where(P.tenant_id == tid)
        s.execute(
            insert(G).from_select(
                ["tenant_id", "profile_id", "groups", "devices"], counted.group_by(P.tenant_id, P.profile_id, P.groups)
            )
        )

    # -- scans -----------------------------------------------------------------------------------------------
    def _components(self, release_id: int, shas: Sequence[str]) -> list[Component]:
        """A release's components, parsed once per process for the same SBOMs (not kept when one cannot be read)."""
        key = tuple(shas)
        with self._lock:
            if key in self._parsed:
                self._parsed.move_to_end(key)
                return self._parsed[key]
        comps, complete = self._parse(release_id, shas)
        if complete:
            with self._lock:
                self._parsed[key] = comps
                while len(self._parsed) > _CACHED_SBOMS:
                    self._parsed.popitem(last=False)
        return comps

    def _parse(self, release_id: int, shas: Sequence[str]) -> tuple[list[Component], bool]:
        docs = []
        for sha in shas:
            try:
                with self.store.open(sha) as f:
                    docs.append(json.load(f))
            except OSError as e:
                log.warning("release %s: SBOM %s cannot be read: %s", release_id, sha, e)
                return [], False
            except ValueError as e:
                log.warning("release %s: SBOM %s cannot be read: %s", release_id, sha, e)
        try:
            return release_components(docs), True
        except CraError as e:
            log.warning("release %s: SBOM not readable for matching: %s", release_id, e)
            return [], True

    def knowledge(self, codenames: set[str]) -> tuple[Knowledge, dict[str, str]]:
        """What the feeds say (for these Debian releases), its record index, and the digest of every vulnerability
        it names: computed once per feed version in this process (a feed change costs its parse and digests once,
        then every tenant's scan reuses them)."""
        k = self.feeds.knowledge(codenames)

        def sha(feed: str) -> str | None:
            return (k.versions.get(feed) or {}).get("sha256")

        def cached(name: str, key: object, make: Any) -> Any:
            with self._lock:
                hit = self._digest_cache.get(name)
            if hit is not None and hit[0] == key:
                return hit[1]
            value = make()
            with self._lock:
                self._digest_cache[name] = (key, value)
            return value

        records_key = (sha("cve-records"), sha("cvelist"), len(k.records))
        tracker_key = (sha("debian-tracker"), frozenset(codenames) if k.tracker is not None else None)
        osv_key = sha("osv")
        k.by_product = cached("index", records_key, lambda: product_index(k))
        records = cached("records", records_key, lambda: record_digests(k.records))
        tracker = cached("tracker", tracker_key, lambda: tracker_digests(k.tracker) if k.tracker is not None else {})
        osv = cached("osv", osv_key, lambda: osv_digests(k.osv) if k.osv is not None else {})
        every_key = (records_key, tracker_key, osv_key, sha("cisa-kev"), sha("first-epss"))
        digests: dict[str, str] = cached("every", every_key, lambda: cve_digests(records, tracker, k.kev, k.epss, osv))
        return k, digests

    def _app_components(self, key: tuple[str, str], sha: str) -> list[Component]:
        try:
            with self.store.open(sha) as f:
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
        """Scan one tenant (`full`, `incremental` or `devices`) and return the run; None when `min_gap` is given and a
        run of this kind started less than that ago (a periodic job that several server processes each scheduled
        runs once).

        No transaction is open while SBOMs and feeds are parsed and matched (on SQLite every transaction holds the
        database's write lock): a short one plans (maps devices, starts the run), then releases and profiles are
        matched and written _CHUNK at a time (so a fleet of many inventories never holds all its findings in memory),
        and a last one closes the run (with the digests of what was matched, for the next incremental run). `run_id`:
        a queued run (see `queue`) that this scan is; a scan that fails marks its run failed with the reason."""
        if kind not in KINDS:
            raise ValueError(f"scan kind must be one of {', '.join(KINDS)}, not {kind!r}")
        plan = self._plan(tid, actor, kind, min_gap, run_id)
        if plan is None:
            return None
        try:
            return self._scan(tid, kind, plan)
        except Exception as e:
            self.fail(plan.run_id, f"{type(e).__name__}: {e}")
            raise

    def _scan(self, tid: int, kind: str, plan: _Plan) -> dict[str, Any]:
        comps = {rid: self._components(rid, shas) for rid, shas in plan.shas.items()}
        if plan.releases:  # what the SBOMs say (Yocto CVE_STATUS, VEX) as VEX records, under any person's statement
            with self.db.session() as s:
                lock_tenant(s, tid)
                import_sbom_statements(s, tid, {rid: (plan.releases[rid], comps.get(rid, [])) for rid in plan.releases})
        app_comps = {key: self._app_components(key, sha) for key, sha in plan.apps.items()}
        every_profile = {**plan.profiles, **plan.delta_profiles}

        def of_profile(pid: int) -> list[Component]:
            _, rel, inv = every_profile[pid]
            return profile_components(comps.get(rel or 0, []), inv)

        codenames = set().union(*(debian_releases(c) for c in comps.values()))
        for pid in every_profile:  # the profiles' components are made again per chunk below: only their codenames stay
            codenames |= debian_releases(of_profile(pid))
        k, every_digest = self.knowledge(codenames)
        counts = {"releases": 0, "profiles": 0, "devices_mapped": plan.mapped, "findings": 0, "affected": 0, "kev": 0}
        digests = every_digest if plan.digests is not None else None
        releases, profiles = dict(plan.releases), dict(plan.profiles)
        changed: set[str] = set()
        if kind == "incremental":
            assert digests is not None and plan.digests is not None
            changed = changed_ids(plan.digests, digests)
            if len(changed) > _MAX_CHANGED:  # nearly everything changed: match everything
                releases.update(plan.delta_releases)
                profiles.update(plan.delta_profiles)
                counts["matched_everything"] = True
            else:
                counts.update(cves_changed=len(changed), releases_delta=0, profiles_delta=0)
        # A profile without reported packages runs its release's components: the release's rows serve it too.
        plain = {rel for _, rel, inv in every_profile.values() if rel is not None and not inv.get("packages")}
        done: dict[tuple[int, int], list[dict[str, Any]]] = {}
        # Each distinct component is matched, and each finding made a row, once per scan (and knowledge).
        memos: dict[int, dict[Component, list[Finding]]] = {}
        made: dict[int, dict[str, Any]] = {}

        def rows_for(components: list[Component], kk: Knowledge) -> list[dict[str, Any]]:
            out = []
            for f in match(components, kk, memos.setdefault(id(kk), {})):
                row = made.get(id(f))
                if row is None:
                    row = made[id(f)] = finding_rows([f], kk)[0]
                out.append(row)
            return out

        def rows_of(rid: int, kk: Knowledge) -> list[dict[str, Any]]:
            key = (id(kk), rid)
            if key not in done:
                done[key] = rows_for(comps.get(rid, []), kk)
            return done[key] if rid in plain else done.pop(key)

        def rows_of_profile(pid: int, kk: Knowledge, only: set[str] | None = None) -> list[dict[str, Any]]:
            """The profile's findings: its OS components' and (OSV) those of the apps it runs."""
            _, rel, inv = every_profile[pid]
            plain_release = rel is not None and not inv.get("packages")
            rows = rows_of(rel, kk) if plain_release and rel is not None else rows_for(of_profile(pid), kk)
            apps = app_finding_rows(inv.get("apps") or {}, app_comps, kk)
            if only is not None:  # an incremental run replaces only the changed vulnerabilities' findings
                apps = [r for r in apps if r["cve"] in only]
            return [*rows, *apps] if apps else rows

        ids = sorted(releases)
        for i in range(0, len(ids), _CHUNK):
            rows = {rid: rows_of(rid, k) for rid in ids[i : i + _CHUNK]}
            self._write(tid, plan, k, rows, {}, counts, releases=releases)
        ids = sorted(profiles)
        for i in range(0, len(ids), _CHUNK):
            rows = {pid: rows_of_profile(pid, k) for pid in ids[i : i + _CHUNK]}
            self._write(tid, plan, k, {}, rows, counts)
        done.clear()
        memos.clear()
        made.clear()
        if kind == "incremental" and "matched_everything" not in counts and changed:
            kd = restricted(k, changed)
            ids = sorted(set(plan.delta_releases) - set(releases))
            for i in range(0, len(ids), _CHUNK):
                rows = {rid: rows_of(rid, kd) for rid in ids[i : i + _CHUNK]}
                self._write(tid, plan, kd, rows, {}, counts, releases=plan.delta_releases, only=changed)
            ids = sorted(set(plan.delta_profiles) - set(profiles))
            for i in range(0, len(ids), _CHUNK):
                rows = {pid: rows_of_profile(pid, kd, changed) for pid in ids[i : i + _CHUNK]}
                self._write(tid, plan, kd, {}, rows, counts, only=changed)
        with self.db.session() as s:
            if digests is not None and plan.digests is not None:
                lock_tenant(s, tid)
                self._store_digests(s, tid, plan.digests, digests, changed if kind == "incremental" else None)
            run = s.get(VulnScanRun, plan.run_id)
            assert run is not None
            run.feeds, run.counts, run.finished_at, run.status = k.versions, counts, utcnow(), "done"
            vuln_history.record(s, tid, f"scan {run.id} ({kind})")
            s.flush()
            return run_json(run)

    @staticmethod
    def _store_digests(
        s: Session, tid: int, before: dict[str, str], now: dict[str, str], changed: set[str] | None = None
    ) -> None:
        """Keep what this run matched against: the digests that changed since the last run (`changed` when the
        caller already knows them) are replaced."""
        D = VulnCveDigest
        gone = sorted(changed if changed is not None else changed_ids(before, now))
        for i in range(0, len(gone), _BATCH):
            s.execute(delete(D).where(D.tenant_id == tid, D.cve.in_(gone[i : i + _BATCH])))
        rows = [{"tenant_id": tid, "cve": cve[:64], "digest": now[cve]} for cve in gone if cve in now]
        copy_in(s, D, ["tenant_id", "cve", "digest"], rows)

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
            self._count_groups(s, tid)
            profiles = list(s.scalars(select(VulnProfile).where(VulnProfile.tenant_id == tid)))
            digests: dict[str, str] | None = None
            if kind in ("full", "incremental"):
                q_digests = select(VulnCveDigest.cve, VulnCveDigest.digest).where(VulnCveDigest.tenant_id == tid)
                digests = {cve: digest for cve, digest in s.execute(q_digests)}
                for p in profiles:  # a release uploaded after the devices reported its version
                    if p.release_id is None:
                        p.release_id = s.scalar(
                            select(Release.id).where(
                                Release.tenant_id == tid, Release.compatible == p.compatible, Release.version == p.os_version
                            )
                        )
                        if p.release_id is not None:
                            p.scanned_run_id = None  # its components changed: matched whole
                todo = profiles
            else:
                todo = [p for p in profiles if p.scanned_run_id is None]
            q = select(ReleaseSbom.release_id, ReleaseSbom.sha256, Release.compatible).join(
                Release, Release.id == ReleaseSbom.release_id
            )
            q = q.where(Release.tenant_id == tid).order_by(ReleaseSbom.release_id, ReleaseSbom.format, ReleaseSbom.sha256)
            if kind == "devices":
                q = q.where(ReleaseSbom.release_id.in_({p.release_id for p in todo if p.release_id is not None}))
            shas: dict[int, list[str]] = {}
            releases: dict[int, str] = {}
            for rid, sha, compatible in s.execute(q):
                shas.setdefault(rid, []).append(sha)
                if kind != "devices":
                    releases[rid] = compatible
            wanted = {(a, v) for p in todo for a, v in ((p.inventory or {}).get("apps") or {}).items()}
            apps: dict[tuple[str, str], str] = {}
            if wanted:
                q_apps = select(App.name, App.version, AppSbom.sha256).join(AppSbom, AppSbom.app_id == App.id)
                for name, version, sha in s.execute(q_apps.where(App.tenant_id == tid)):
                    if (name, version) in wanted:
                        apps[(name, version)] = sha
            run = s.get(VulnScanRun, run_id) if run_id is not None else None
            if run is None:
                run = VulnScanRun(tenant_id=tid, kind=kind, actor=actor, feeds={}, counts={})
                s.add(run)
            run.status, run.started_at = "running", utcnow()
            s.flush()
            whole = {p.id: (p.compatible, p.release_id, dict(p.inventory or {})) for p in todo}
            if kind != "incremental" or not digests:  # no earlier run to compare with: everything is matched
                return _Plan(run.id, mapped, releases, shas, whole, digests=digests, apps=apps)
            q_matched = select(VulnReleaseScan.release_id, VulnReleaseScan.sboms).where(VulnReleaseScan.tenant_id == tid)
            matched = {rid: sboms for rid, sboms in s.execute(q_matched)}
            new = {rid: c for rid, c in releases.items() if matched.get(rid) != ",".join(shas[rid])}
            delta = {rid: c for rid, c in releases.items() if rid not in new}
            unseen = {p.id for p in todo if p.scanned_run_id is None}
            fresh = {pid: v for pid, v in whole.items() if v[1] in new or pid in unseen}
            rest = {pid: v for pid, v in whole.items() if pid not in fresh}
            return _Plan(run.id, mapped, new, shas, fresh, delta_releases=delta, delta_profiles=rest, digests=digests, apps=apps)

    def _write(
        self,
        tid: int,
        plan: _Plan,
        k: Knowledge,
        release_rows: dict[int, list[dict[str, Any]]],
        profile_rows: dict[int, list[dict[str, Any]]],
        counts: dict[str, Any],
        releases: dict[int, str] | None = None,
        only: set[str] | None = None,
    ) -> None:
        """Replace the findings of some releases and profiles in one transaction (with the VEX statements as they are
        now: one set while matching applies); with `only`, just their findings of those vulnerabilities."""
        compatible_of = releases if releases is not None else plan.releases
        with self.db.session() as s:
            lock_tenant(s, tid)
            vex = _vex_map(s, tid)
            existing = set(s.scalars(select(Release.id).where(Release.tenant_id == tid, Release.id.in_(release_rows))))
            # The per-id digests (large) are read only by a full write; an incremental one leaves them unloaded.
            q_profiles = select(VulnProfile).where(VulnProfile.id.in_(profile_rows))
            q_scans = select(VulnReleaseScan).where(VulnReleaseScan.release_id.in_(release_rows))
            if only is None:
                q_profiles = q_profiles.options(undefer(VulnProfile.id_digests))
                q_scans = q_scans.options(undefer(VulnReleaseScan.id_digests))
            profiles = {p.id: p for p in s.scalars(q_profiles)}
            if only is not None:
                self._delete_of(
                    s, tid, only, [r for r in release_rows if r in existing], [p for p in profile_rows if p in profiles]
                )
            scans = {r.release_id: r for r in s.scalars(q_scans)}
            pending: list[dict[str, Any]] = []  # an incremental write's rows: one COPY per chunk, not one per scope
            for rid, rows in release_rows.items():
                if rid not in existing:
                    continue  # deleted while it was matched
                prepared = self._prepare(tid, compatible_of[rid], rid, None, rows, vex, plan.run_id, counts)
                counts["releases" if only is None else "releases_delta"] += 1
                old, sboms = scans.get(rid), ",".join(plan.shas.get(rid, []))
                if only is not None:
                    if old is not None:
                        old.rows_digest = None
                        # their digests are no longer known: the next full run writes them
                        old.stale_ids = add_stale(old.stale_ids, only)
                    pending += prepared
                    continue
                now = id_digests(prepared)
                same = self._write_changed(
                    s, tid, prepared, now, load_digests(old.id_digests) if old is not None else None,
                    load_stale(old.stale_ids) if old is not None else set(),
                    (VulnFinding.release_id == rid) & VulnFinding.profile_id.is_(None), counts,
                )  # fmt: skip
                if same:
                    counts["releases_same"] = counts.get("releases_same", 0) + 1
                if old is None:
                    s.add(
                        VulnReleaseScan(
                            release_id=rid, tenant_id=tid, sboms=sboms, run_id=plan.run_id, rows_digest=None,
                            id_digests=dump_digests(now),
                        )
                    )  # fmt: skip
                elif not same:
                    old.sboms, old.run_id, old.rows_digest, old.id_digests = sboms, plan.run_id, None, dump_digests(now)
                    old.stale_ids = None
                elif old.sboms != sboms:
                    old.sboms = sboms
            for pid, rows in profile_rows.items():
                p = profiles.get(pid)
                if p is None:
                    continue  # no device uses it any more
                prepared = self._prepare(tid, p.compatible, None, pid, rows, vex, plan.run_id, counts)  # the profile only
                if only is not None:
                    pending += prepared
                    p.stale_ids = add_stale(p.stale_ids, only)
                else:
                    now = id_digests(prepared)
                    before, stale = load_digests(p.id_digests), load_stale(p.stale_ids)
                    if self._write_changed(s, tid, prepared, now, before, stale, VulnFinding.profile_id == pid, counts):
                        counts["profiles_same"] = counts.get("profiles_same", 0) + 1
                    p.id_digests, p.stale_ids = dump_digests(now), None
                p.scanned_run_id = plan.run_id
                counts["profiles" if only is None else "profiles_delta"] += 1
            store_findings(s, pending)
            described = self._describe(
                s, {r["cve"] for rows in (*release_rows.values(), *profile_rows.values()) for r in rows}, k
            )
        with self._lock:  # committed: not written again by this process while it stays the same
            self._described.update(described)

    @staticmethod
    def _write_changed(
        s: Session,
        tid: int,
        prepared: list[dict[str, Any]],
        now: dict[str, str],
        before: dict[str, str] | None,
        stale: set[str],
        scope: Any,
        counts: dict[str, Any],
    ) -> bool:
        """Make a release's or profile's stored findings (`scope`) the `prepared` rows. With the digests of the stored
        rows known, only the rows of the ids whose digest differs, or that an incremental run rewrote since (`stale`),
        are deleted and written (the rest are already the same); else all. Returns whether nothing had to be
        written."""
        F = VulnFinding
        if before is None:
            s.execute(delete(F).where(scope))
            store_findings(s, prepared)
            counts["rows_written"] = counts.get("rows_written", 0) + len(prepared)
            return False
        diff = {cve for cve in before.keys() | now.keys() if before.get(cve) != now.get(cve)} | stale
        if not diff:
            return True
        names = sorted(c[:64] for c in diff)
        for i in range(0, len(names), _BATCH):
            s.execute(delete(F).where(F.tenant_id == tid, scope, F.cve.in_(names[i : i + _BATCH])))
        rows = [r for r in prepared if r["cve"] in diff]
        store_findings(s, rows)
        counts["rows_written"] = counts.get("rows_written", 0) + len(rows)
        counts["ids_rewritten"] = counts.get("ids_rewritten", 0) + len(diff)
        return False

    @staticmethod
    def _delete_of(s: Session, tid: int, cves: set[str], releases: list[int], profiles: list[int]) -> None:
        """Delete the findings of these vulnerabilities in these releases (their own) and profiles."""
        F = VulnFinding
        scope = or_(F.profile_id.in_(profiles), (F.profile_id.is_(None)) & F.release_id.in_(releases))
        names = sorted(c[:64] for c in cves)
        for i in range(0, len(names), _BATCH):
            s.execute(delete(F).where(F.tenant_id == tid, F.cve.in_(names[i : i + _BATCH]), scope))

    def _describe(self, s: Session, cves: set[str], k: Knowledge) -> dict[str, tuple[object, ...]]:
        """Keep the description and dates of the CVEs found (the API shows them without reading the feeds); what
        this process already wrote the same way is not written again. Returns what it writes."""
        rows = []
        written: dict[str, tuple[object, ...]] = {}
        for cve in sorted(cves):
            records = k.records.get(cve, [])
            if not records:
                continue
            description = next((r.description for r in records if r.description), None)
            published = next((r.published for r in records if r.published), None)
            updated = max((r.updated for r in records if r.updated), default=None)
            key = (description, published, updated)
            with self._lock:
                if self._described.get(cve) == key:
                    continue
            written[cve] = key
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
        return written

    @staticmethod
    def _prepare(
        tid: int,
        compatible: str,
        release_id: int | None,
        profile_id: int | None,
        rows: list[dict[str, Any]],
        vex: VexIndex,
        run_id: int,
        counts: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """The rows as stored: scope, run and the VEX statements applied (and counted)."""
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
        return rows
