"""What an SBOM document is: its standard, version and component count, checked before it is kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SbomError

__all__ = ["CYCLONEDX_VERSIONS", "SPDX_VERSIONS", "SbomInfo", "identify"]

SPDX_VERSIONS = ("SPDX-2.2", "SPDX-2.3")
CYCLONEDX_VERSIONS = ("1.4", "1.5", "1.6")


@dataclass(frozen=True)
class SbomInfo:
    format: str  # "spdx" or "cyclonedx"
    spec_version: str
    components: int


def identify(doc: Any) -> SbomInfo:
    """Identify a parsed JSON document as SPDX or CycloneDX and check the fields every consumer relies on."""
    if not isinstance(doc, dict):
        raise SbomError("an SBOM is a JSON object; this document is not")
    if "spdxVersion" in doc:
        return _spdx(doc)
    if doc.get("bomFormat") == "CycloneDX":
        return _cyclonedx(doc)
    raise SbomError("not an SBOM: expected SPDX JSON (spdxVersion) or CycloneDX JSON (bomFormat: CycloneDX)")


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
