"""KEV updates: the CISA catalogue held now laid over a tenant's findings, and an event per CVE newly exploited.

A finding of a CVE the catalogue lists is flagged (with the date CISA added it), one it no longer lists unflagged.
The first time a listed CVE affects something of the tenant, an audit event `vuln.kev_exploited` is recorded
(subject: the CVE; details: date added, due date, ransomware use, affected devices and release versions), once per
tenant and CVE, for the CRA-duties work to turn into a case. A run (kind `kev`) is kept when something changed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from ..db import Database
from ..models import AuditEvent, Release, utcnow
from ..vuln_feeds import FeedStore
from ..vuln_models import VulnDeviceProfile, VulnFinding, VulnScanRun
from . import vuln_history
from .vuln_scan import lock_tenant, run_json

__all__ = ["KEV_EVENT", "apply_kev"]

KEV_EVENT = "vuln.kev_exploited"  # the audit action of a CVE newly known exploited that affects the tenant
_BATCH = 500


def apply_kev(db: Database, feeds: FeedStore, tid: int, actor: str) -> dict[str, Any] | None:
    """Mark the tenant's findings of KEV-listed CVEs exploited (and unmark removed ones); an audit event per CVE
    that is newly exploited while it affects the tenant. A run is kept when something changed; None otherwise
    (or when no KEV catalogue is held)."""
    catalog = feeds.kev()
    if catalog is None:
        return None
    F = VulnFinding
    with db.session() as s:
        lock_tenant(s, tid)
        affected_n = func.max(case((F.status == "affected", 1), else_=0))
        unflagged_n = func.max(case((F.kev, 0), else_=1))
        flagged_n = func.max(case((F.kev, 1), else_=0))
        state = s.execute(select(F.cve, affected_n, unflagged_n, flagged_n).where(F.tenant_id == tid).group_by(F.cve)).all()
        flag = [cve for cve, _, unflagged, _ in state if cve in catalog and unflagged]
        gone = [cve for cve, _, _, flagged in state if flagged and cve not in catalog]
        told = set(s.scalars(select(AuditEvent.subject).where(AuditEvent.tenant_id == tid, AuditEvent.action == KEV_EVENT)))
        exploited = [cve for cve, affected, _, _ in state if affected and cve in catalog and cve not in told]
        if not (flag or gone or exploited):
            return None  # nothing changed: no run to keep (the hourly job would otherwise add one an hour)
        run = VulnScanRun(tenant_id=tid, kind="kev", actor=actor, feeds={"cisa-kev": feeds.versions()["cisa-kev"]})
        s.add(run)
        s.flush()
        for cve in flag:
            s.execute(
                update(F).where(F.tenant_id == tid, F.cve == cve).values(kev=True, kev_date=catalog.entries[cve].date_added)
            )
        for cve in exploited:
            e = catalog.entries[cve]
            s.add(_kev_event(s, tid, actor, cve, e.date_added, e.due_date, e.ransomware_known))
        for i in range(0, len(gone), _BATCH):
            chunk = gone[i : i + _BATCH]
            s.execute(update(F).where(F.tenant_id == tid, F.kev, F.cve.in_(chunk)).values(kev=False, kev_date=None))
        run.counts = {"flagged": len(flag), "unflagged": len(gone), "events": len(exploited), "catalog": catalog.version}
        run.finished_at = utcnow()
        vuln_history.record(s, tid, f"kev {run.id}")
        s.flush()
        return run_json(run)


def _kev_event(s: Session, tid: int, actor: str, cve: str, added: dt.date, due: dt.date | None, ransomware: bool) -> AuditEvent:
    F, P = VulnFinding, VulnDeviceProfile
    devices = s.scalar(
        select(func.count(func.distinct(P.device_id)))
        .join(F, F.profile_id == P.profile_id)
        .where(F.tenant_id == tid, F.cve == cve, F.status == "affected")
    )
    releases = sorted(
        s.scalars(
            select(Release.version)
            .join(F, F.release_id == Release.id)
            .where(F.tenant_id == tid, F.cve == cve, F.status == "affected", F.profile_id.is_(None))
            .distinct()
        )
    )
    details = {
        "kev_date_added": added.isoformat(),
        "kev_due_date": due.isoformat() if due else None,
        "ransomware_known": ransomware,
        "devices": devices or 0,
        "releases": releases,
    }
    return AuditEvent(tenant_id=tid, actor=actor, action=KEV_EVENT, subject=cve, details=details)
