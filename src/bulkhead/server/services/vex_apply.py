"""Which VEX statement a finding shows: the rules, once, for the scans (rows in memory) and for a changed statement
(set-based UPDATEs).

A statement applies to a finding of its product and CVE when it is product-wide (no component), or names the
finding's component and either no version or the finding's component version (the version it was triaged against:
carried forward to later releases and devices while the component is unchanged). Of the statements that apply,
a person's wins over the SBOM's (Yocto CVE_STATUS), then the more specific: component and version over component
over product.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from ..vuln_models import VexStatement, VulnFinding

__all__ = ["VexIndex", "rank", "reapply", "stale_note"]


def rank(v: VexStatement) -> tuple[int, int]:
    """Higher wins: a person's over the SBOM's, then component and version > component > product-wide."""
    return (v.origin != "sbom", 2 if v.component and v.component_version else 1 if v.component else 0)


def applies(v: VexStatement, component: str, version: str) -> bool:
    if not v.component:
        return True
    return v.component == component and (not v.component_version or v.component_version == version)


class VexIndex:
    """A tenant's statements by product and CVE, for laying them over finding rows."""

    def __init__(self, statements: Iterable[VexStatement]) -> None:
        self.by_key: dict[tuple[str, str], list[VexStatement]] = defaultdict(list)
        for v in statements:
            self.by_key[(v.compatible, v.cve)].append(v)
        for vs in self.by_key.values():
            vs.sort(key=rank, reverse=True)

    @classmethod
    def of_tenant(cls, s: Session, tid: int) -> VexIndex:
        return cls(s.scalars(select(VexStatement).where(VexStatement.tenant_id == tid)))

    def pick(self, compatible: str, cve: str, component: str, version: str) -> VexStatement | None:
        return next((v for v in self.by_key.get((compatible, cve), ()) if applies(v, component, version)), None)

    def apply(self, rows: list[dict[str, Any]], compatible: str) -> None:
        """Set each row's effective status (and vex_id) from the statement that applies to it."""
        for row in rows:
            v = self.pick(compatible, row["cve"], row["component"], row["component_version"])
            if v is not None:
                row["status"], row["vex_id"] = v.status, v.id


def reapply(s: Session, tid: int, compatible: str, cve: str) -> None:
    """Findings of the product and CVE back to the matcher's status, then the statements laid over them again, the
    weakest first so that the one that wins is written last."""
    F = VulnFinding
    scope = and_(F.tenant_id == tid, F.compatible == compatible, F.cve == cve)
    s.execute(update(F).where(scope).values(status=F.matcher_status, vex_id=None))
    statements = s.scalars(
        select(VexStatement).where(VexStatement.tenant_id == tid, VexStatement.compatible == compatible, VexStatement.cve == cve)
    )
    for v in sorted(statements, key=rank):
        where = []
        if v.component:
            where.append(F.component == v.component)
            if v.component_version:
                where.append(F.component_version == v.component_version)
        s.execute(update(F).where(scope, *where).values(status=v.status, vex_id=v.id))


def stale_note(f: VulnFinding, statements: Iterable[VexStatement]) -> str | None:
    """For a finding no statement decides (or only a product-wide one): the note that a statement exists for another
    version of its component (triaged then; this version is not yet)."""
    if f.status not in ("affected", "under_investigation"):
        return None
    older = [
        v
        for v in statements
        if v.compatible == f.compatible and v.cve == f.cve and v.component == f.component
        and v.component_version and v.component_version != f.component_version
    ]  # fmt: skip
    if not older or (f.vex_id is not None and any(v.id == f.vex_id and v.component for v in statements)):
        return None
    v = max(older, key=lambda v: v.at)
    return (
        f"VEX statement {v.id} ({v.status}) was made for {v.component} {v.component_version}; this finding is for "
        f"{f.component_version}, which nobody has triaged: review it and set a statement for this version"
    )
