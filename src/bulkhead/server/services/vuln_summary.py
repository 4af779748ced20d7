"""The fleet's exposure in a few numbers (the overview's card): CVEs affecting devices per severity, KEV among them,
and how many devices at least one of them affects.

Set-based: grouped counts over the tenant's device findings (one row per CVE and device profile) and a sum over
the profile-to-devices mapping the last scan wrote; no device row is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..vuln_models import VulnFinding
from ..vuln_state_models import VulnProfileGroups
from .auth import Principal

__all__ = ["Exposure", "exposure", "exposure_of"]

F, G = VulnFinding, VulnProfileGroups
_SEVERITY_OF_RANK = {0: "unknown", 1: "low", 2: "medium", 3: "high", 4: "critical"}


@dataclass
class Exposure:
    by_severity: dict[str, int] = field(default_factory=dict)  # CVEs affecting at least one device, by severity
    kev: int = 0  # of those, known exploited
    devices: int = 0  # devices at least one CVE affects

    @property
    def cves(self) -> int:
        return sum(self.by_severity.values())


def exposure(s: Session, who: Principal) -> Exposure:
    who.require("viewer")
    return exposure_of(s, who.require_tenant())


def exposure_of(s: Session, tid: int) -> Exposure:
    """The tenant's exposure now (callers check who may read it)."""
    affected = (F.tenant_id == tid, F.status == "affected", F.profile_id.is_not(None))
    out = Exposure()
    # A CVE's severity is its worst finding's: rank per CVE first, then count CVEs per rank.
    worst = select(F.cve, func.max(F.severity_rank).label("rank")).where(*affected).group_by(F.cve).subquery()
    for rank, n in s.execute(select(worst.c.rank, func.count()).group_by(worst.c.rank)):
        out.by_severity[_SEVERITY_OF_RANK.get(rank, "unknown")] = int(n)
    out.kev = int(s.scalar(select(func.count(func.distinct(F.cve))).where(*affected, F.kev.is_(True))) or 0)
    profiles = select(F.profile_id).where(*affected).distinct()
    out.devices = int(
        s.scalar(select(func.coalesce(func.sum(G.devices), 0)).where(G.tenant_id == tid, G.profile_id.in_(profiles))) or 0
    )
    return out
