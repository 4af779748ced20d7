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

Documents that are not Yocto's (Bulkhead's own export): when no package has the purpose `install`, the packages
some package `contains` are the installed ones, and a source package that `generates` a package is its source
(name and version). The supplier is the name of the `suppliedBy` agent, the hashes are the `verifiedUsing` Hashes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from ..errors import SbomContentError
from ..model import Component, ComponentOrigin, FindingStatus, SbomVulnStatement
from ._common import distro_release, hash_algorithm, is_kernel, purl_facts

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


def _version_of(e: Mapping[str, Any]) -> str:
    return str(e.get("software_packageVersion", ""))


def _supplier(by_id: Mapping[str, Mapping[str, Any]], e: Mapping[str, Any]) -> str | None:
    agent = by_id.get(str(e.get("suppliedBy")), {})
    name = agent.get("name")
    return str(name) if isinstance(name, str) and name else None


def _hashes(e: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for h in e.get("verifiedUsing", []):
        if isinstance(h, dict) and h.get("type") == "Hash" and h.get("algorithm") and h.get("hashValue"):
            out.append((hash_algorithm(str(h["algorithm"])), str(h["hashValue"]).lower()))
    return tuple(sorted(out))


def _compiled_sources(graph: list[dict[str, Any]], by_id: Mapping[str, Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """Per recipe, the source files its build lists as inputs (`hasInput` from its `build_Build` to `software_File`s
    of purpose `source`), when they are compiled sources: Yocto writes them with SPDX_INCLUDE_COMPILED_SOURCES. A
    recipe's own few SRC_URI files (config fragments, scripts) are not that list, so one without a C source is left
    out (the kernel's compiled sources are thousands of .c and .h files)."""
    found: dict[str, set[str]] = defaultdict(set)
    for e in graph:
        if e.get("relationshipType") != "hasInput":
            continue
        build = by_id.get(str(e.get("from")), {})
        if build.get("type") != "build_Build":
            continue
        recipe = str(build.get("name", "")).split(":", 1)[0]
        for t in _targets(e):
            f = by_id.get(t, {})
            if f.get("type") == "software_File" and f.get("software_primaryPurpose") == "source" and f.get("name"):
                found[recipe].add(str(f["name"]))
    return {r: frozenset(files) for r, files in found.items() if any(f.endswith(".c") for f in files)}


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
    compiled = _compiled_sources(graph, by_id)
    source_of: dict[str, dict[str, Any]] = {}
    contained: list[str] = []
    for e in graph:
        src = by_id.get(str(e.get("from")), {})
        if e.get("relationshipType") == "generates" and src.get("type") == "software_Package":
            for t in _targets(e):
                source_of[t] = src
        elif e.get("relationshipType") == "contains" and src.get("type") == "software_Package":
            contained += [t for t in _targets(e) if by_id.get(t, {}).get("type") == "software_Package"]
    statements: dict[str, dict[str, SbomVulnStatement]] = defaultdict(dict)
    for e in graph:
        if e.get("type") in _VEX:
            cve = _cve_of(by_id.get(str(e.get("from"))))
            if cve is None:
                raise SbomContentError(f"SPDX 3 VEX relationship {e.get('spdxId')}: its vulnerability has no CVE identifier")
            for t in _targets(e):
                statements[recipe_of.get(t, t)][cve] = _statement(e, cve)
    installed = [e for e in graph if e.get("type") == "software_Package" and e.get("software_primaryPurpose") == "install"]
    if not installed:
        installed = [by_id[t] for t in dict.fromkeys(contained)]
    out = []
    for e in installed:
        ids = [x for x in e.get("externalIdentifier", []) if isinstance(x, dict)]
        cpes = tuple(str(x["identifier"]) for x in ids if x.get("externalIdentifierType") in ("cpe23", "cpe22"))
        purls = [str(x["identifier"]) for x in ids if x.get("externalIdentifierType") == "packageUrl"]
        purl = purls[0] if purls else (str(e["software_packageUrl"]) if e.get("software_packageUrl") else None)
        distro, release = distro_release(purl_facts(purl).get("distro"))
        recipe = recipe_of.get(str(e["spdxId"]))
        source = source_of.get(str(e["spdxId"]))
        source_version = str(source.get("software_packageVersion", "")) if source else (_version_of(e) if recipe else None)
        if source is not None:
            recipe = str(source.get("name", "")) or None
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
                source_version=source_version or None,
                distro=distro,
                distro_release=release,
                is_kernel=(kernel := is_kernel([recipe, name], cpes)),
                statements=tuple(stated[c] for c in sorted(stated)),
                supplier=_supplier(by_id, e),
                hashes=_hashes(e),
                compiled_sources=compiled.get(recipe or "") if kernel else None,
            )
        )
    return out
