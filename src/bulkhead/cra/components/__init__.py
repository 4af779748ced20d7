"""SBOMs and device inventories → components: one reader per format, `read_sbom` picks the reader.

See spdx2 (SPDX 2.2/2.3 JSON, one or many documents), spdx3 (SPDX 3.0.1 JSON-LD), cyclonedx (CycloneDX 1.4-1.6
JSON), inventory (the agent's package report) and archive (the documents of a Yocto .spdx.tar.zst).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import SbomError
from ..model import Component
from ..sbom import CYCLONEDX_VERSIONS, SPDX_VERSIONS
from .archive import spdx_archive_documents
from .cyclonedx import read_cyclonedx
from .inventory import read_inventory
from .spdx2 import read_spdx2
from .spdx3 import read_spdx3

__all__ = ["read_cyclonedx", "read_inventory", "read_sbom", "read_spdx2", "read_spdx3", "spdx_archive_documents"]


def _kind(doc: Any) -> str:
    if not isinstance(doc, Mapping):
        raise SbomError("an SBOM is a JSON object; this document is not")
    if "spdxVersion" in doc:
        if doc["spdxVersion"] not in SPDX_VERSIONS:
            raise SbomError(f"SPDX version {doc['spdxVersion']!r} is not supported; use one of {', '.join(SPDX_VERSIONS)}")
        return "spdx2"
    if doc.get("bomFormat") == "CycloneDX":
        if doc.get("specVersion") not in CYCLONEDX_VERSIONS:
            raise SbomError(
                f"CycloneDX specVersion {doc.get('specVersion')!r} is not supported; use one of {', '.join(CYCLONEDX_VERSIONS)}"
            )
        return "cyclonedx"
    context = doc.get("@context")
    if isinstance(context, str) and context.startswith("https://spdx.org/rdf/3.0"):
        return "spdx3"
    raise SbomError("not an SBOM: expected SPDX 2 JSON (spdxVersion), SPDX 3 JSON-LD (@context) or CycloneDX JSON")


def read_sbom(documents: Sequence[Any]) -> list[Component]:
    """Components of an SBOM given as its parsed JSON documents (several only for a multi-document SPDX 2 SBOM)."""
    if not documents:
        raise SbomError("no SBOM document given")
    kinds = {_kind(d) for d in documents}
    if len(kinds) > 1 or (len(documents) > 1 and kinds != {"spdx2"}):
        raise SbomError("give one SBOM at a time: several documents are only read together as one SPDX 2 SBOM")
    kind = kinds.pop()
    if kind == "spdx2":
        return read_spdx2(documents)
    return read_spdx3(documents[0]) if kind == "spdx3" else read_cyclonedx(documents[0])
