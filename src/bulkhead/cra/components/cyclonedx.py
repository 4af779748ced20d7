"""CycloneDX 1.4-1.6 JSON → components, read with cyclonedx-python-lib; its `vulnerabilities` analysis as statements.

Components are flattened (nested components count); the metadata component (the image or app itself) is not one.
A Debian source package is read from the properties `debian:source`/`debian:source_version` (the reference image
writes them), `bulkhead:source_name`/`bulkhead:source_version` (Bulkhead's export) or the purl's `upstream`
qualifier; CPEs beyond the one `cpe` field from `bulkhead:cpe` properties. VEX: a vulnerability's `analysis.state`
applies to the components its `affects` refs name (resolved/resolved_with_pedigree → fixed, exploitable → affected,
in_triage → under investigation, false_positive/not_affected → not affected).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component as CdxComponent
from cyclonedx.model.impact_analysis import ImpactAnalysisState

from ..errors import SbomContentError
from ..model import Component, ComponentOrigin, FindingStatus, SbomVulnStatement
from ._common import distro_release, hash_algorithm, is_kernel, purl_facts

__all__ = ["read_cyclonedx"]

_STATE = {
    ImpactAnalysisState.RESOLVED: FindingStatus.FIXED,
    ImpactAnalysisState.RESOLVED_WITH_PEDIGREE: FindingStatus.FIXED,
    ImpactAnalysisState.EXPLOITABLE: FindingStatus.AFFECTED,
    ImpactAnalysisState.IN_TRIAGE: FindingStatus.UNDER_INVESTIGATION,
    ImpactAnalysisState.FALSE_POSITIVE: FindingStatus.NOT_AFFECTED,
    ImpactAnalysisState.NOT_AFFECTED: FindingStatus.NOT_AFFECTED,
}


def _flatten(components: Iterable[CdxComponent]) -> Iterable[CdxComponent]:
    for c in components:
        yield c
        yield from _flatten(c.components)


def _statements(bom: Bom) -> dict[str, list[SbomVulnStatement]]:
    out: dict[str, list[SbomVulnStatement]] = defaultdict(list)
    for v in bom.vulnerabilities:
        if not v.id or v.analysis is None or v.analysis.state not in _STATE:
            continue
        justification = v.analysis.justification.value if v.analysis.justification else None
        statement = SbomVulnStatement(v.id, _STATE[v.analysis.state], justification, v.analysis.detail)
        for target in v.affects:
            out[str(target.ref)].append(statement)
    return out


def read_cyclonedx(doc: Mapping[str, Any]) -> list[Component]:
    """The components of a CycloneDX JSON BOM (specVersion 1.4-1.6) with what its vulnerabilities section says."""
    try:
        bom = Bom.from_json(dict(doc))  # type: ignore[attr-defined]
    except Exception as e:  # the library raises many types (ValueError, KeyError, its own) on malformed input
        raise SbomContentError(f"CycloneDX document cannot be read: {e}; check it against the CycloneDX JSON schema") from e
    if not isinstance(bom, Bom):
        raise SbomContentError("CycloneDX document cannot be read: it is not a BOM")
    statements = _statements(bom)
    out = []
    for c in _flatten(bom.components):
        props = {p.name: p.value for p in c.properties}
        extra_cpes = [p.value for p in c.properties if p.name == "bulkhead:cpe" and p.value]
        purl = c.purl.to_string() if c.purl is not None else None
        facts = purl_facts(purl)
        distro, release = distro_release(facts.get("distro"))
        source_name = props.get("debian:source") or props.get("bulkhead:source_name") or facts.get("upstream")
        source_version = (
            props.get("debian:source_version") or props.get("bulkhead:source_version") or (c.version if source_name else None)
        )
        if distro is None and facts.get("type") == "deb":
            distro = facts.get("namespace")
        cpes = tuple(dict.fromkeys(([c.cpe] if c.cpe else []) + extra_cpes))
        ref = str(c.bom_ref.value) if c.bom_ref and c.bom_ref.value else ""
        out.append(
            Component(
                name=c.name,
                version=c.version or "",
                origin=ComponentOrigin.CYCLONEDX,
                purl=purl,
                cpes=cpes,
                source_name=source_name,
                source_version=source_version,
                distro=distro,
                distro_release=release,
                is_kernel=is_kernel([source_name, c.name], cpes),
                statements=tuple(statements.get(ref, ())),
                supplier=c.supplier.name if c.supplier is not None and c.supplier.name else None,
                hashes=tuple(sorted((hash_algorithm(h.alg.value), h.content.lower()) for h in c.hashes)),
            )
        )
    return out
