"""SPDX 3.0.1 JSON-LD (as Yocto's create-spdx 3 writes it) → components, with the document's VEX statements.

Why not spdx-tools: spdx-tools 0.8 models SPDX 3 and can write it (and bump SPDX 2 documents to it), but it has no
SPDX 3 parser, so it cannot read a Yocto SPDX 3 file. This module reads the JSON-LD `@graph` directly, as the
compacted form of the SPDX 3.0.1 context (`type`, `spdxId`, `software_*`/`security_*` property names); it does no
generic JSON-LD expansion, which Yocto's output does not need.

What is read: installed packages (`software_Package` with `software_primaryPurpose: install`), their CPE and
purl external identifiers, the recipe each comes from (the `build_Build` named `<recipe>:do_create_spdx:recipe`
that `hasOutput` the package), and the VEX assessment relationships from a `security_Vulnerability` to packages:
VexFixed → fixed, VexNotAffected → not affected (with justification type and impact statement), VexAffected →
affected, VexUnderInvestigation → under investigation. A statement about one package of a recipe applies to every
package the same recipe built (Yocto decides CVE status per recipe).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from ..errors import SbomContentError
from ..model import Component, ComponentOrigin, FindingStatus, SbomVulnStatement
from ._common import distro_release, is_kernel, purl_facts

__all__ = ["read_spdx3"]

_VEX = {
    "security_VexFixedVulnAssessmentRelationship": FindingStatus.FIXED,
    "security_VexNotAffectedVulnAssessmentRelationship": FindingStatus.NOT_AFFECTED,
    "security_VexAffectedVulnAssessmentRelationship": FindingStatus.AFFECTED,
    "security_VexUnderInvestigationVulnAssessmentRelationship": FindingStatus.UNDER_INVESTIGATION,
}


def _graph(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    graph = doc.get("@graph")
    if not isinstance(graph, list) or not all(isinstance(e, dict) for e in graph):
        raise SbomContentError("SPDX 3 JSON-LD: the document has no @graph list of objects")
    return graph


def _targets(e: Mapping[str, Any]) -> list[str]:
    to = e.get("to", [])
    return [t for t in (to if isinstance(to, list) else [to]) if isinstance(t, str)]


def _cve_of(vuln: Mapping[str, Any] | None) -> str | None:
    if not vuln:
        return None
    for x in vuln.get("externalIdentifier", []):
        if isinstance(x, dict) and x.get("externalIdentifierType") == "cve" and x.get("identifier"):
            return str(x["identifier"])
    name = vuln.get("name")
    return str(name) if isinstance(name, str) and name.startswith("CVE-") else None


def _statement(e: Mapping[str, Any], cve: str) -> SbomVulnStatement:
    status = _VEX[e["type"]]
    detail = e.get("security_impactStatement") or e.get("security_statusNotes") or e.get("security_actionStatement")
    justification = e.get("security_justificationType")
    if status == FindingStatus.FIXED and not justification:
        justification = "yocto-patched"
    return SbomVulnStatement(cve, status, str(justification) if justification else None, str(detail) if detail else None)


def read_spdx3(doc: Mapping[str, Any]) -> list[Component]:
    """The installed components of a Yocto SPDX 3.0.1 JSON-LD image SBOM, with its VEX statements."""
    graph = _graph(doc)
    by_id = {str(e["spdxId"]): e for e in graph if isinstance(e.get("spdxId"), str)}
    recipe_of: dict[str, str] = {}
    for e in graph:
        if e.get("relationshipType") == "hasOutput":
            build = by_id.get(str(e.get("from")), {})
            name = str(build.get("name", ""))
            if build.get("type") == "build_Build" and name.endswith(":do_create_spdx:recipe"):
                for t in _targets(e):
                    recipe_of[t] = name.split(":", 1)[0]
    statements: dict[str, dict[str, SbomVulnStatement]] = defaultdict(dict)
    for e in graph:
        if e.get("type") in _VEX:
            cve = _cve_of(by_id.get(str(e.get("from"))))
            if cve is None:
                raise SbomContentError(f"SPDX 3 VEX relationship {e.get('spdxId')}: its vulnerability has no CVE identifier")
            for t in _targets(e):
                statements[recipe_of.get(t, t)][cve] = _statement(e, cve)
    out = []
    for e in graph:
        if e.get("type") != "software_Package" or e.get("software_primaryPurpose") != "install":
            continue
        ids = [x for x in e.get("externalIdentifier", []) if isinstance(x, dict)]
        cpes = tuple(str(x["identifier"]) for x in ids if x.get("externalIdentifierType") in ("cpe23", "cpe22"))
        purls = [str(x["identifier"]) for x in ids if x.get("externalIdentifierType") == "packageUrl"]
        purl = purls[0] if purls else (str(e["software_packageUrl"]) if e.get("software_packageUrl") else None)
        distro, release = distro_release(purl_facts(purl).get("distro"))
        recipe = recipe_of.get(str(e["spdxId"]))
        name, version = str(e.get("name", "")), str(e.get("software_packageVersion", ""))
        if not name:
            raise SbomContentError(f"SPDX 3 package {e['spdxId']} has no name")
        stated = statements.get(recipe or str(e["spdxId"]), {}) | statements.get(str(e["spdxId"]), {})
        out.append(
            Component(
                name=name,
                version=version,
                origin=ComponentOrigin.SPDX,
                purl=purl,
                cpes=cpes,
                source_name=recipe,
                source_version=version if recipe else None,
                distro=distro,
                distro_release=release,
                is_kernel=is_kernel([recipe, name], cpes),
                statements=tuple(stated[c] for c in sorted(stated)),
            )
        )
    return out
