"""What releases' SBOMs say about CVEs (Yocto CVE_STATUS / cve-check, SPDX 3 and CycloneDX VEX) kept as VEX records.

Each statement becomes a VEX statement of the release's product for the component and the version the SBOM lists
(origin "sbom", actor "sbom"), with the status and justification of `bulkhead.cra.vex_yocto`'s table. It never
replaces a person's statement for the same key, and a person's statement wins over it wherever both apply
(vex_apply). Run by full scans, before the findings are written; one audit event `vex.sbom_import` when something
was added or changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from bulkhead.cra.model import Component
from bulkhead.cra.vex_yocto import SbomDecision, sbom_decision

from ..models import AuditEvent, utcnow
from ..vuln_models import VexStatement

__all__ = ["SBOM_ACTOR", "import_sbom_statements"]

SBOM_ACTOR = "sbom"
_BATCH = 500


def _wanted(
    releases: Mapping[int, tuple[str, Sequence[Component]]],
) -> dict[tuple[str, str, str, str], tuple[SbomDecision, str | None]]:
    out: dict[tuple[str, str, str, str], tuple[SbomDecision, str | None]] = {}
    for _rid, (compatible, components) in sorted(releases.items()):
        for c in components:
            for st in c.statements:
                d = sbom_decision(st)
                if d is not None and st.cve:
                    out.setdefault((compatible, st.cve.upper()[:64], c.name[:256], c.version[:256]), (d, c.purl))
    return out


def import_sbom_statements(s: Session, tid: int, releases: Mapping[int, tuple[str, Sequence[Component]]]) -> dict[str, int]:
    """Add or update the SBOM's statements of these releases (release id -> compatible, components); returns counts."""
    wanted = _wanted(releases)
    counts = {"added": 0, "updated": 0, "kept_person": 0}
    if not wanted:
        return counts
    products = sorted({k[0] for k in wanted})
    existing = {
        (v.compatible, v.cve, v.component, v.component_version): v
        for v in s.scalars(select(VexStatement).where(VexStatement.tenant_id == tid, VexStatement.compatible.in_(products)))
    }
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for key, (d, purl) in wanted.items():
        v = existing.get(key)
        if v is None:
            compatible, cve, component, version = key
            rows.append(
                {"tenant_id": tid, "compatible": compatible, "cve": cve, "component": component,
                 "component_version": version, "purl": purl, "status": d.status, "justification": d.justification,
                 "impact_statement": d.impact, "action_statement": None, "actor": SBOM_ACTOR, "origin": "sbom", "at": now}
            )  # fmt: skip
        elif v.origin != "sbom":
            counts["kept_person"] += 1
        elif (v.status, v.justification, v.impact_statement) != (d.status, d.justification, d.impact):
            v.status, v.justification, v.impact_statement, v.at = d.status, d.justification, d.impact, now
            counts["updated"] += 1
    for i in range(0, len(rows), _BATCH):
        s.execute(insert(VexStatement), rows[i : i + _BATCH])
    counts["added"] = len(rows)
    if counts["added"] or counts["updated"]:
        s.add(
            AuditEvent(
                tenant_id=tid, actor=SBOM_ACTOR, action="vex.sbom_import", subject=", ".join(products)[:256],
                details={"added": counts["added"], "updated": counts["updated"]},
            )
        )  # fmt: skip
    s.flush()
    return counts
