"""What an SBOM document is: its standard, version and component count, checked before it is kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SbomError

__all__ = ["CYCLONEDX_VERSIONS", "SPDX3_CONTEXT", "SPDX_VERSIONS", "SbomInfo", "identify"]

SPDX_VERSIONS = ("SPDX-2.2", "SPDX-2.3")
SPDX3_CONTEXT = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
CYCLONEDX_VERSIONS = ("1.4", "1.5", "1.6")


@dataclass(frozen=True)
class SbomInfo:
    format: str  # "spdx" (SPDX 2), "spdx3" (SPDX 3.0.1 JSON-LD) or "cyclonedx"
    spec_version: str
    components: int


def identify(doc: Any) -> SbomInfo:
    """Identify a parsed JSON document as SPDX 2, SPDX 3.0.1 or CycloneDX and check the fields every consumer relies on."""
    if not isinstance(doc, dict):
        raise SbomError("an SBOM is a JSON object; this document is not")
    if "spdxVersion" in doc:
        return _spdx(doc)
    if doc.get("bomFormat") == "CycloneDX":
        return _cyclonedx(doc)
    if "@context" in doc:
        return _spdx3(doc)
    raise SbomError(
        "not an SBOM: expected SPDX 2 JSON (spdxVersion), SPDX 3.0.1 JSON-LD (@context) or CycloneDX JSON (bomFormat: CycloneDX)"
    )


def _spdx(doc: dict[str, Any]) -> SbomInfo:
    version = doc.get("spdxVersion")
    if version not in SPDX_VERSIONS:
        raise SbomError(f"SPDX version {version!r} is not supported; use one of {', '.join(SPDX_VERSIONS)}")
    if doc.get("SPDXID") != "SPDXRef-DOCUMENT":
        raise SbomError('SPDX document: SPDXID must be "SPDXRef-DOCUMENT"')
    for key in ("name", "documentNamespace", "creationInfo"):
        if not doc.get(key):
            raise SbomError(f"SPDX document: the required field {key} is missing")
    packages = doc.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, dict) and p.get("SPDXID") for p in packages):
        raise SbomError("SPDX document: packages must be a list of objects, each with an SPDXID")
    return SbomInfo("spdx", str(version), len(packages))


def _cyclonedx(doc: dict[str, Any]) -> SbomInfo:
    version = doc.get("specVersion")
    if version not in CYCLONEDX_VERSIONS:
        raise SbomError(f"CycloneDX specVersion {version!r} is not supported; use one of {', '.join(CYCLONEDX_VERSIONS)}")
    components = doc.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) and c.get("name") for c in components):
        raise SbomError("CycloneDX document: components must be a list of objects, each with a name")
    return SbomInfo("cyclonedx", str(version), len(components))


def _spdx3(doc: dict[str, Any]) -> SbomInfo:
    """SPDX 3.0.1 JSON-LD in its compacted form (as Yocto and Bulkhead write it): the 3.0.1 context, a @graph of
    typed elements with an SpdxDocument; counted are its installed packages (purpose install, as Yocto marks them),
    else the packages a package `contains` (the components of Bulkhead's export), else all its packages."""
    context = doc.get("@context")
    if context != SPDX3_CONTEXT:
        raise SbomError(f"SPDX 3 JSON-LD: @context {context!r} is not supported; use SPDX 3.0.1 ({SPDX3_CONTEXT})")
    graph = doc.get("@graph")
    if not isinstance(graph, list) or not all(isinstance(e, dict) and isinstance(e.get("type"), str) for e in graph):
        raise SbomError("SPDX 3 JSON-LD: @graph must be a list of objects, each with a type")
    if not any(e["type"] == "SpdxDocument" for e in graph):
        raise SbomError("SPDX 3 JSON-LD: the @graph has no SpdxDocument element")
    packages = [e for e in graph if e["type"] == "software_Package"]
    installed = [e for e in packages if e.get("software_primaryPurpose") == "install"]
    ids = {e.get("spdxId") for e in packages}
    contained = {
        t
        for e in graph
        if e["type"] == "Relationship" and e.get("relationshipType") == "contains" and e.get("from") in ids
        for t in (e.get("to") if isinstance(e.get("to"), list) else [e.get("to")])
        if t in ids
    }
    return SbomInfo("spdx3", "3.0.1", len(installed) or len(contained) or len(packages))
