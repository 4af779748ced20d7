"""The fields of an Article 14 case gathered from the tenant's data, set-based: the product, affected versions, the
countries (Member States) of the affected devices and their counts, CVE ids, exploitation, the corrective measure and
its rollout progress.

A vulnerability case's affected devices are those whose findings of its CVEs are `affected`; an incident's are the
devices of its product. A device's country is its attribute `country` (ISO 3166-1 alpha-2), counted by the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from bulkhead.cra.srp import EU_MEMBER_STATES

from ..cra_models import CraCase, CraProduct
from ..models import Action, Device, Release, Rollout
from ..vuln_models import VulnCve, VulnDeviceProfile, VulnFinding

__all__ = ["affected_devices", "case_fields", "case_products"]

_SEVERITY = ("none", "low", "medium", "high", "critical")


def _date(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


def affected_devices(case: CraCase) -> Select[Any]:
    """A select of the ids of the devices the case concerns."""
    tid = case.tenant_id
    if case.cves:
        F, P = VulnFinding, VulnDeviceProfile
        return (
            select(P.device_id)
            .join(F, F.profile_id == P.profile_id)
            .where(P.tenant_id == tid, F.tenant_id == tid, F.cve.in_(case.cves), F.status == "affected")
            .distinct()
        )
    return select(Device.id).where(Device.tenant_id == tid, Device.compatible == (case.compatible or ""))


def case_products(s: Session, case: CraCase) -> list[str]:
    """The compatibles the case concerns: its own, and those whose releases or devices its CVEs affect."""
    names = {case.compatible} if case.compatible else set()
    if case.cves:
        F = VulnFinding
        names |= set(
            s.scalars(
                select(F.compatible).where(F.tenant_id == case.tenant_id, F.cve.in_(case.cves), F.status == "affected").distinct()
            )
        )
    return sorted(n for n in names if n)


def _countries(s: Session, devices: Select[Any]) -> dict[str, int]:
    country = func.upper(func.coalesce(Device.attributes["country"].as_string(), ""))
    rows = s.execute(select(country, func.count(Device.id)).where(Device.id.in_(devices)).group_by(country)).all()
    return {str(c or ""): int(n) for c, n in rows}


def _corrective_progress(s: Session, tid: int, corrective: dict[str, Any] | None) -> dict[str, Any] | None:
    rid = (corrective or {}).get("release_id")
    if not isinstance(rid, int):
        return None
    rel = s.get(Release, rid)
    if rel is None or rel.tenant_id != tid:
        return None
    rollouts = s.execute(
        select(Rollout.id, Rollout.name, Rollout.status)
        .where(Rollout.tenant_id == tid, Rollout.release_id == rid)
        .order_by(Rollout.id)
    ).all()
    counts: dict[int, dict[str, int]] = {r.id: {} for r in rollouts}
    if rollouts:
        q = (
            select(Action.rollout_id, Action.status, func.count())
            .where(Action.rollout_id.in_(list(counts)), Action.superseded.is_(False))
            .group_by(Action.rollout_id, Action.status)
        )
        for ro, status, n in s.execute(q):
            counts[ro][status] = int(n)
    running = s.scalar(
        select(func.count())
        .select_from(Device)
        .where(Device.tenant_id == tid, Device.compatible == rel.compatible, Device.os_version == rel.version)
    )
    return {
        "release": {"id": rel.id, "compatible": rel.compatible, "version": rel.version},
        "devices_running_fix": int(running or 0),
        "rollouts": [
            {
                "name": r.name,
                "status": r.status,
                "devices": sum(counts[r.id].values()),
                "succeeded": counts[r.id].get("success", 0),
                "failed": counts[r.id].get("failure", 0) + counts[r.id].get("rolled_back", 0),
            }
            for r in rollouts
        ],
    }


def case_fields(s: Session, case: CraCase) -> dict[str, Any]:
    """Every field a submission may carry, pre-filled from what the server knows now."""
    tid = case.tenant_id
    F = VulnFinding
    compatibles = case_products(s, case)
    products = {
        p.compatible: p
        for p in s.scalars(select(CraProduct).where(CraProduct.tenant_id == tid, CraProduct.compatible.in_(compatibles)))
    }
    devices = affected_devices(case)
    by_version = s.execute(
        select(Device.compatible, Device.os_version, func.count(Device.id))
        .where(Device.id.in_(devices))
        .group_by(Device.compatible, Device.os_version)
    ).all()
    versions: dict[str, set[str]] = {c: set() for c in compatibles}
    for compatible, version, _n in by_version:
        versions.setdefault(compatible, set()).add(version or "unknown")
    kev, kev_date, worst, cvss, description = False, None, 0, None, None
    if case.cves:
        for compatible, version in s.execute(
            select(Release.compatible, Release.version)
            .join(F, F.release_id == Release.id)
            .where(F.tenant_id == tid, F.cve.in_(case.cves), F.status == "affected", F.profile_id.is_(None))
            .distinct()
        ):
            versions.setdefault(compatible, set()).add(version)
        row = s.execute(
            select(func.max(F.severity_rank), func.max(F.cvss), func.max(F.kev_date), func.count(F.id).filter(F.kev)).where(
                F.tenant_id == tid, F.cve.in_(case.cves)
            )
        ).one()
        worst, cvss, kev_date, kev = int(row[0] or 0), row[1], row[2], bool(row[3])
        described = s.execute(select(VulnCve.cve, VulnCve.description).where(VulnCve.cve.in_(case.cves))).all()
        description = "\n".join(f"{c}: {d}" for c, d in described if d) or None
    countries = _countries(s, devices)
    member = {c: n for c, n in sorted(countries.items()) if c in EU_MEMBER_STATES or c == "EL"}
    outside = {c: n for c, n in sorted(countries.items()) if c and c not in member}
    signal = case.signal or {}
    exploitation: dict[str, Any] = {
        "actively_exploited": case.kind == "vulnerability" and (kev or case.source == "kev"),
        "source": "CISA Known Exploited Vulnerabilities catalogue" if (kev or case.source == "kev") else None,
        "kev_date_added": signal.get("kev_date_added") or (kev_date.isoformat() if kev_date else None),
        "ransomware_known": signal.get("ransomware_known"),
    }
    total = sum(int(n) for _, _, n in by_version)
    return {
        "product": [
            {
                "compatible": c,
                "name": products[c].name if c in products else None,
                "manufacturer": products[c].manufacturer if c in products else None,
                "support_end": _date(products[c].support_end) if c in products else None,
            }
            for c in compatibles
        ],
        "affected_versions": {c: sorted(v) for c, v in sorted(versions.items())},
        "cve_ids": list(case.cves),
        "exploitation": exploitation,
        "suspected_malicious": case.kind == "incident" or exploitation["actively_exploited"],
        "member_states": member,
        "countries_outside_eu": outside,
        "devices": {
            "affected": total,
            "in_member_states": sum(member.values()),
            "country_unknown": countries.get("", 0),
            "by_version": {f"{c} {v or 'unknown'}": int(n) for c, v, n in by_version},
        },
        "severity": {"level": _SEVERITY[min(worst, 4)] if case.cves else None, "cvss": cvss},
        "description": description,
        "mitigations": case.mitigations,
        "corrective_measure": case.corrective,
        "corrective_measure_progress": _corrective_progress(s, tid, case.corrective),
    }
