"""The apps a device runs, and their SBOMs' components matched with OSV: finding rows that name their app.

No database here. A device runs the app versions its agent reports (`inventory.containers`: each managed container
names its app and version); those are part of its profile, so devices running the same release, packages and apps
share findings. An app version's components are those of its CycloneDX SBOM; the ones with a package URL are
matched against the OSV records of their ecosystem (`bulkhead.cra.match_osv`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bulkhead.cra.match_osv import match_osv
from bulkhead.cra.model import Component

from ..vuln_feeds import Knowledge
from ..vuln_osv import osv_candidates
from .vuln_match import STATUS_RANK, finding_rows, reported_apps

__all__ = ["app_finding_rows", "reported_apps"]


def app_finding_rows(
    apps: Mapping[str, str], components: Mapping[tuple[str, str], Sequence[Component]], k: Knowledge
) -> list[dict[str, Any]]:
    """The finding rows of the apps (name -> version) whose SBOM components are known, each naming its app: at most
    one per app, component and CVE (the most severe status when two records disagree)."""
    if not k.osv:
        return []
    out = []
    for name, version in sorted(apps.items()):
        comps = components.get((name, version))
        if not comps:
            continue
        best: dict[tuple[str, str, str], Any] = {}
        for f in match_osv(comps, osv_candidates(comps, k.osv)):
            key = (f.component.name, f.component.version, f.cve)
            old = best.get(key)
            if old is None or STATUS_RANK[f.status.value] > STATUS_RANK[old.status.value]:
                best[key] = f
        for row in finding_rows(sorted(best.values(), key=lambda f: (f.cve, f.component.name)), k):
            row.update(app=name, app_version=version)
            out.append(row)
    return out
