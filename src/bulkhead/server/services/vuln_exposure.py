"""Read-side queries of vulnerability monitoring: the CVE list of a scope, one CVE's fleet exposure, its devices.

Everything is set-based SQL: a device's findings are those of its profile (`vuln_device_profiles`), so counting
or listing the devices a CVE affects is a join of findings, profiles and devices, never a loop over devices; the
breakdown by group and by member state (`country`) is counted over the mapping table.
A finding *exposes* when its effective status is `affected` (a VEX statement may have made it something else).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.orm import Session

from ..errors import Invalid, NotFound
from ..models import Device, Release, ReleaseSbom
from ..vuln_models import VexStatement, VulnDeviceProfile, VulnFinding, VulnProfile, VulnScanRun
from ..vuln_state_models import VulnProfileGroups
from .device_list import json_array_has
from .keyset import Page, Paged, keyset, paged
from .vex_apply import stale_note
from .vuln_country import country_of
from .vuln_match import SEVERITY_RANK, STATUS_RANK

__all__ = ["Scope", "cve_devices", "cve_exposure", "cve_page", "vex_json"]

F, P, D = VulnFinding, VulnDeviceProfile, Device
_SEVERITY_OF_RANK = {0: "unknown", 1: "low", 2: "medium", 3: "high", 4: "critical"}


@dataclass(frozen=True)
class Scope:
    """Which findings a list reads: one release's, one device's, one group's devices', or the whole tenant's."""

    release_id: int | None = None
    device: str | None = None
    group: str | None = None
    kev: bool | None = None
    min_severity: str | None = None
    status: str | None = None


def _scope_profiles(s: Session, tid: int, scope: Scope) -> dict[int, int] | None:
    """For a device or group scope: its devices per profile (one pass over the scope's devices); None otherwise."""
    if scope.device is not None:
        dev = s.scalar(select(D.id).where(D.tenant_id == tid, D.name == scope.device))
        if dev is None:
            raise NotFound(f"device '{scope.device}' does not exist; list devices with 'bulkhead device list'")
        devices = D.id == dev
    elif scope.group is not None:
        devices = and_(D.tenant_id == tid, json_array_has(s, D.groups, [scope.group]))
    else:
        return None
    q = select(P.profile_id, func.count()).join(D, D.id == P.device_id).where(P.tenant_id == tid, devices)
    return {r[0]: r[1] for r in s.execute(q.group_by(P.profile_id))}


def _conditions(s: Session, tid: int, scope: Scope) -> tuple[list[ColumnElement[bool]], dict[int, int] | None]:
    """The findings of the scope, and (device or group scope) its devices per profile."""
    conds: list[ColumnElement[bool]] = [F.tenant_id == tid]
    if scope.release_id is not None:
        if s.scalar(select(Release.id).where(Release.tenant_id == tid, Release.id == scope.release_id)) is None:
            raise NotFound(f"release {scope.release_id} does not exist; list releases with 'bulkhead release list'")
        conds += [F.release_id == scope.release_id, F.profile_id.is_(None)]
    profiles = _scope_profiles(s, tid, scope)
    if profiles is not None:
        conds.append(F.profile_id.in_(sorted(profiles)))
    if scope.kev:
        conds.append(F.kev.is_(True))
    if scope.min_severity is not None:
        if scope.min_severity not in SEVERITY_RANK or scope.min_severity in ("unknown", "none"):
            raise Invalid(f"min_severity must be one of low, medium, high, critical, not {scope.min_severity!r}")
        conds.append(F.severity_rank >= SEVERITY_RANK[scope.min_severity])
    if scope.status is not None:
        if scope.status not in STATUS_RANK:
            raise Invalid(f"status must be one of {', '.join(STATUS_RANK)}, not {scope.status!r}")
        conds.append(F.status == scope.status)
    return conds, profiles


def cve_page(s: Session, tid: int, scope: Scope, page: Page) -> Paged[dict[str, Any]]:
    """One row per CVE in the scope, by CVE id: worst status, severity, CVSS, EPSS, KEV, components, exposed devices."""
    conds, profiles = _conditions(s, tid, scope)
    q = select(
        F.cve,
        func.max(F.severity_rank).label("rank"),
        func.max(F.cvss).label("cvss"),
        func.max(F.epss).label("epss"),
        func.max(case((F.kev, 1), else_=0)).label("kev"),
        func.min(F.kev_date).label("kev_date"),
    ).where(*conds)
    rows = s.execute(keyset(q.group_by(F.cve), [F.cve], page)).all()
    cves = [r.cve for r in rows[: page.limit]]
    detail: dict[str, dict[str, Any]] = defaultdict(lambda: {"statuses": Counter(), "components": set(), "fixed": set()})
    if cves:
        q2 = select(F.cve, F.status, F.component, F.component_version, F.fixed_version, F.app, F.app_version).where(
            *conds, F.cve.in_(cves)
        )
        for cve, status, comp, version, fixed, app, app_version in s.execute(q2.distinct()):
            d = detail[cve]
            d["statuses"][status] += 1
            d["components"].add(f"{comp} {version}" + (f" (app {app} {app_version})" if app else ""))
            if fixed and status == "affected":
                d["fixed"].add(fixed)
    exposed = _exposed_counts(s, tid, scope, cves, profiles)

    def render(r: Any) -> dict[str, Any]:
        d = detail[r.cve]
        statuses: Counter[str] = d["statuses"]
        return {
            "cve": r.cve,
            "status": max(statuses, key=lambda x: STATUS_RANK.get(x, 0)) if statuses else None,
            "statuses": dict(statuses),
            "severity": _SEVERITY_OF_RANK.get(r.rank, "unknown"),
            "cvss": r.cvss,
            "epss": r.epss,
            "kev": bool(r.kev),
            "kev_date": r.kev_date.isoformat() if r.kev_date else None,
            "components": sorted(d["components"]),
            "fixed_versions": sorted(d["fixed"]),
            "devices": exposed.get(r.cve, 0),
        }

    return paged(rows, page, lambda r: (r.cve,), render)


def _exposed_counts(s: Session, tid: int, scope: Scope, cves: list[str], profiles: dict[int, int] | None) -> dict[str, int]:
    """Per CVE of a page: the devices in the scope whose profile it affects (summed per profile, not per device)."""
    if not cves or scope.release_id is not None:
        return {}
    exposed = select(F.cve, F.profile_id).where(
        F.tenant_id == tid, F.cve.in_(cves), F.status == "affected", F.profile_id.is_not(None)
    )
    pairs = s.execute(exposed.distinct()).all()
    if not pairs:
        return {}
    if profiles is None:  # the whole tenant: every device of each profile (as the last scan counted them)
        G = VulnProfileGroups
        q = select(G.profile_id, func.sum(G.devices)).where(G.tenant_id == tid, G.profile_id.in_({pid for _, pid in pairs}))
        profiles = {r[0]: int(r[1]) for r in s.execute(q.group_by(G.profile_id))}
    out: Counter[str] = Counter()
    for cve, pid in pairs:
        if pid is not None:
            out[cve] += profiles.get(pid, 0)
    return dict(out)


def _names(raw: str | None) -> set[str]:
    try:
        names = json.loads(raw) if raw else []
    except ValueError:
        return set()
    return {g for g in names if isinstance(g, str)} if isinstance(names, list) else set()


def _profile_counts(s: Session, tid: int, profiles: Select[Any]) -> dict[int, list[tuple[str, int]]]:
    """Per profile: how many devices it maps, by their group list (JSON text), as the last scan counted them."""
    out: dict[int, list[tuple[str, int]]] = defaultdict(list)
    G = VulnProfileGroups
    q = select(G.profile_id, G.groups, G.devices).where(G.tenant_id == tid, G.profile_id.in_(profiles))
    for pid, raw, n in s.execute(q):
        out[pid].append((raw, n))
    return out


def _country_counts(s: Session, tid: int, profiles: set[int]) -> dict[str, int]:
    """Affected devices per member state (the `country` attribute the mapping keeps; "unknown" without one): a GROUP
    BY over the mapping table of the exposed profiles, never a loop over devices."""
    if not profiles:
        return {}
    out: Counter[str] = Counter()
    q = select(P.country, func.count()).where(P.tenant_id == tid, P.profile_id.in_(sorted(profiles))).group_by(P.country)
    for country, n in s.execute(q):
        out[country_of(country)] += n
    return dict(sorted(out.items()))


def _exposed_devices(tid: int, cve: str) -> Select[Any]:
    return (
        select(P.device_id)
        .join(F, F.profile_id == P.profile_id)
        .where(P.tenant_id == tid, F.tenant_id == tid, F.cve == cve, F.status == "affected")
    )


def vex_json(v: VexStatement) -> dict[str, Any]:
    return {
        "id": v.id,
        "compatible": v.compatible,
        "cve": v.cve,
        "component": v.component or None,
        "component_version": v.component_version or None,
        "purl": v.purl,
        "origin": v.origin,
        "status": v.status,
        "justification": v.justification,
        "impact_statement": v.impact_statement,
        "action_statement": v.action_statement,
        "actor": v.actor,
        "at": v.at.isoformat(),
    }


def _finding_json(f: VulnFinding, release: str | None, statements: list[VexStatement]) -> dict[str, Any]:
    return {
        "release_id": f.release_id,
        "release": release,
        "compatible": f.compatible,
        "component": f.component,
        "component_version": f.component_version,
        "purl": f.purl,
        "status": f.status,
        "matcher_status": f.matcher_status,
        "severity": f.severity,
        "cvss": f.cvss,
        "epss": f.epss,
        "kev": f.kev,
        "kev_date": f.kev_date.isoformat() if f.kev_date else None,
        "fixed_version": f.fixed_version,
        "source": f.source,
        "reason": f.reason,
        "kernel": f.kernel,
        "vex_id": f.vex_id,
        "vex_note": stale_note(f, statements),
        "run_id": f.run_id,
    }


def _fixing_releases(s: Session, tid: int, cve: str) -> list[dict[str, Any]]:
    """Per compatible whose releases this CVE affects: the first later release, scanned since its SBOM came, that it
    does not affect (fixed, not affected, or no longer containing the component: a clean release has no finding)."""
    affected = s.execute(
        select(F.compatible, func.max(F.release_id))
        .where(F.tenant_id == tid, F.cve == cve, F.status == "affected", F.profile_id.is_(None))
        .group_by(F.compatible)
    ).all()
    last_full = s.scalar(
        select(func.max(VulnScanRun.started_at)).where(
            VulnScanRun.tenant_id == tid, VulnScanRun.kind.in_(("full", "incremental"))
        )
    )
    out = []
    for compatible, last_affected in affected:
        later = None
        if last_full is not None:
            scanned = select(ReleaseSbom.release_id).where(ReleaseSbom.created_at <= last_full)
            still = select(F.release_id).where(F.tenant_id == tid, F.cve == cve, F.status == "affected", F.profile_id.is_(None))
            later = s.execute(
                select(Release.id, Release.version)
                .where(
                    Release.tenant_id == tid,
                    Release.compatible == compatible,
                    Release.id > last_affected,
                    Release.id.in_(scanned),
                    ~Release.id.in_(still),
                )
                .order_by(Release.id)
                .limit(1)
            ).first()
        out.append(
            {"compatible": compatible, "release_id": later.id if later else None, "version": later.version if later else None}
        )
    return out


def cve_exposure(s: Session, tid: int, cve: str) -> dict[str, Any]:
    """Everything known about one CVE in the tenant: findings per release, device findings, exposure, fix, VEX."""
    releases = {r[0]: r[1] for r in s.execute(select(Release.id, Release.version).where(Release.tenant_id == tid))}
    rel_findings = list(
        s.scalars(select(F).where(F.tenant_id == tid, F.cve == cve, F.profile_id.is_(None)).order_by(F.release_id, F.component))
    )
    # Devices per profile (and per group list), counted once over the narrow mapping table: every sum below is over
    # these few rows, never over devices.
    counts = _profile_counts(s, tid, select(F.profile_id).where(F.tenant_id == tid, F.cve == cve, F.profile_id.is_not(None)))
    per_key: Counter[tuple[str, str, str, str, str | None, str | None, str | None]] = Counter()
    exposed_profiles: set[int] = set()
    q = select(
        F.profile_id, F.compatible, F.component, F.component_version, F.status, F.fixed_version, F.app, F.app_version
    ).where(F.tenant_id == tid, F.cve == cve, F.profile_id.is_not(None))
    for pid, compatible, comp, version, status, fixed, app, app_version in s.execute(q.distinct()):
        if pid is None:
            continue
        per_key[(compatible, comp, version, status, fixed, app, app_version)] += sum(n for _, n in counts.get(pid, []))
        if status == "affected":
            exposed_profiles.add(pid)
    device_rows = [(*key, n) for key, n in sorted(per_key.items(), key=lambda kv: kv[0][:3]) if n]
    if not rel_findings and not device_rows:
        raise NotFound(f"{cve} affects nothing the last scans saw in this tenant; scan with 'bulkhead vuln scan'")
    groups: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    os_versions = {
        r[0]: r[1] for r in s.execute(select(VulnProfile.id, VulnProfile.os_version).where(VulnProfile.id.in_(exposed_profiles)))
    }
    for pid in exposed_profiles:
        for raw, n in counts.get(pid, []):
            versions[os_versions.get(pid, "")] += n
            groups.update({g: n for g in _names(raw)})
    n_devices = sum(versions.values())
    every = rel_findings + list(s.scalars(select(F).where(F.tenant_id == tid, F.cve == cve).limit(1)))
    top = max(every, key=lambda f: f.severity_rank)
    vex = list(
        s.scalars(select(VexStatement).where(VexStatement.tenant_id == tid, VexStatement.cve == cve).order_by(VexStatement.id))
    )
    fixed_versions = sorted({f.fixed_version for f in rel_findings if f.fixed_version and f.status == "affected"})
    fixed_versions += sorted({r[4] for r in device_rows if r[4] and r[3] == "affected"} - set(fixed_versions))
    return {
        "cve": cve,
        "severity": top.severity,
        "cvss": max((f.cvss for f in every if f.cvss is not None), default=None),
        "epss": max((f.epss for f in every if f.epss is not None), default=None),
        "kev": any(f.kev for f in every),
        "kev_date": next((f.kev_date.isoformat() for f in every if f.kev_date), None),
        "findings": [_finding_json(f, releases.get(f.release_id or 0), vex) for f in rel_findings],
        "device_findings": [
            {
                "compatible": c,
                "component": comp,
                "component_version": ver,
                "status": st,
                "fixed_version": fx,
                "app": app,
                "app_version": app_version,
                "devices": n,
            }
            for c, comp, ver, st, fx, app, app_version, n in device_rows
        ],
        "exposure": {
            "devices": n_devices,
            "groups": dict(sorted(groups.items())),
            "versions": dict(sorted(versions.items())),
            "countries": _country_counts(s, tid, exposed_profiles),
        },
        "fix": {"versions": fixed_versions, "releases": _fixing_releases(s, tid, cve)},
        "vex": [vex_json(v) for v in vex],
    }


def cve_devices(s: Session, tid: int, cve: str, page: Page) -> Paged[dict[str, Any]]:
    """One page of the devices the CVE affects, by name."""
    q = select(D.id, D.name, D.compatible, D.os_version, D.groups).where(D.tenant_id == tid, D.id.in_(_exposed_devices(tid, cve)))
    rows = s.execute(keyset(q, [D.name], page)).all()
    return paged(
        rows,
        page,
        lambda r: (r.name,),
        lambda r: {"name": r.name, "compatible": r.compatible, "os_version": r.os_version, "groups": r.groups},
    )
