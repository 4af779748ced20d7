"""The CVE loop of the package overlay: a patched package that says what it fixes closes the finding on the devices
that install it.

An overlay package whose own changelog entry names CVE ids (`overlay_debs.changelog_fixes`; `overlay rebuild`
writes such an entry) becomes, for each of the tenant's products (compatibles of its releases and devices) and each
of those CVEs, a VEX statement of origin "overlay": status `fixed` for that binary package at exactly that version.
A device that reports the package at that version has the finding fixed at once (the statement is laid over the
findings like any other, vex_apply.py); a device still at the old version stays affected, and the CVE's page shows
the statement, naming the package to install. A person's own statement for the same key is never replaced. When the
package is removed from the overlay its statements are withdrawn.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Device, Release, utcnow
from ..overlay_models import OverlayPackage
from ..vuln_models import VexStatement
from .vex_apply import reapply
from .vuln_scan import lock_tenant

__all__ = ["ORIGIN", "declare", "withdraw"]

ORIGIN = "overlay"


def _products(s: Session, tid: int) -> list[str]:
    releases = set(s.scalars(select(Release.compatible).where(Release.tenant_id == tid).distinct()))
    devices = set(s.scalars(select(Device.compatible).where(Device.tenant_id == tid).distinct()))
    return sorted(releases | devices)


def declare(s: Session, tid: int, p: OverlayPackage, actor: str) -> int:
    """The package's `fixed` statements (one per product and CVE it names); returns how many were set."""
    if not p.fixes:
        return 0
    lock_tenant(s, tid)
    made = 0
    action = f"install {p.name} {p.version} from the package overlay (suite {p.suite}): its changelog names this CVE as fixed"
    for compatible in _products(s, tid):
        for cve in p.fixes:
            v = s.scalar(
                select(VexStatement).where(
                    VexStatement.tenant_id == tid,
                    VexStatement.compatible == compatible,
                    VexStatement.cve == cve,
                    VexStatement.component == p.name,
                    VexStatement.component_version == p.version,
                )
            )
            if v is not None and v.origin != ORIGIN:
                continue  # a person's (or the SBOM's) statement for this very version stands
            if v is None:
                v = VexStatement(tenant_id=tid, compatible=compatible, cve=cve, component=p.name, component_version=p.version)
                s.add(v)
            v.status, v.justification, v.impact_statement, v.action_statement = "fixed", None, None, action[:2000]
            v.purl, v.origin, v.actor, v.at = None, ORIGIN, actor, utcnow()
            s.flush()
            reapply(s, tid, compatible, cve)
            made += 1
    return made


def withdraw(s: Session, tid: int, p: OverlayPackage) -> int:
    """The statements this package made, withdrawn (when it leaves the overlay); returns how many."""
    if not p.fixes:
        return 0
    lock_tenant(s, tid)
    twin = select(OverlayPackage.id).where(
        OverlayPackage.tenant_id == tid, OverlayPackage.name == p.name, OverlayPackage.version == p.version,
        OverlayPackage.id != p.id,
    )  # fmt: skip
    if s.scalar(twin.limit(1)) is not None:
        return 0  # the same version stays in another suite (or architecture): its statements still hold
    gone = list(
        s.scalars(
            select(VexStatement).where(
                VexStatement.tenant_id == tid,
                VexStatement.origin == ORIGIN,
                VexStatement.component == p.name,
                VexStatement.component_version == p.version,
                VexStatement.cve.in_(list(p.fixes)),
            )
        )
    )
    for v in gone:
        s.delete(v)
    s.flush()
    for compatible, cve in sorted({(v.compatible, v.cve) for v in gone}):
        reapply(s, tid, compatible, cve)
    return len(gone)
