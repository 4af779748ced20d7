"""Components → an SPDX 2.3 JSON document, built with spdx-tools' model and written (and validated) by its writer.

The release is the described package (purpose OPERATING_SYSTEM, the bundle's SHA256 as its checksum, the compatible
in its comment) that CONTAINS one package per component. A component's purl and CPEs are external references, its
supplier an Organization, its hashes checksums, its source package a `sourceInfo` sentence that the reader parses
("built from Debian source package openssl 3.0.15-1~deb12u1", "built from source package busybox 1.36.1").
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from urllib.parse import quote

from spdx_tools.spdx.model.actor import Actor, ActorType
from spdx_tools.spdx.model.checksum import Checksum, ChecksumAlgorithm
from spdx_tools.spdx.model.document import CreationInfo, Document
from spdx_tools.spdx.model.package import ExternalPackageRef, ExternalPackageRefCategory, Package, PackagePurpose
from spdx_tools.spdx.model.relationship import Relationship, RelationshipType
from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion
from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

from ..components._common import hash_algorithm
from ..errors import SbomError
from ..model import Component
from ._meta import TOOL, ReleaseMeta, document_uuid

__all__ = ["export_spdx2"]

_ALGORITHMS = {hash_algorithm(a.name): a for a in ChecksumAlgorithm}
_ROOT = "SPDXRef-Release"


def _spdx_id(i: int, name: str) -> str:
    return f"SPDXRef-Package-{i}-" + re.sub(r"[^A-Za-z0-9.-]", "-", name)


def _refs(c: Component) -> list[ExternalPackageRef]:
    refs = []
    if c.purl:
        refs.append(ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", c.purl))
    for cpe in c.cpes:
        kind = "cpe23Type" if cpe.startswith("cpe:2.3:") else "cpe22Type"
        refs.append(ExternalPackageRef(ExternalPackageRefCategory.SECURITY, kind, cpe))
    return refs


def _source_info(c: Component) -> str | None:
    if not c.source_name:
        return None
    kind = "Debian source package" if c.distro == "debian" else "source package"
    return f"built from {kind} {c.source_name} {c.source_version or c.version}"


def _package(i: int, c: Component) -> Package:
    return Package(
        spdx_id=_spdx_id(i, c.name),
        name=c.name,
        download_location=SpdxNoAssertion(),
        version=c.version or None,
        files_analyzed=False,
        supplier=Actor(ActorType.ORGANIZATION, c.supplier) if c.supplier else SpdxNoAssertion(),
        checksums=[Checksum(_ALGORITHMS[alg], value) for alg, value in c.hashes if alg in _ALGORITHMS],
        source_info=_source_info(c),
        external_references=_refs(c),
    )


def export_spdx2(meta: ReleaseMeta, components: Sequence[Component]) -> str:
    """An SPDX 2.3 JSON document of the release and its components."""
    uid = document_uuid(meta, components, "spdx")
    info = CreationInfo(
        spdx_version="SPDX-2.3",
        spdx_id="SPDXRef-DOCUMENT",
        name=f"{meta.name}-{meta.version}",
        document_namespace=f"https://bulkhead.invalid/spdx/{quote(meta.name, safe='')}/{quote(meta.version, safe='')}/{uid}",
        creators=[Actor(ActorType.TOOL, TOOL)],
        created=meta.created.replace(microsecond=0),
    )
    root = Package(
        spdx_id=_ROOT,
        name=meta.name,
        download_location=SpdxNoAssertion(),
        version=meta.version,
        files_analyzed=False,
        checksums=[Checksum(ChecksumAlgorithm.SHA256, meta.sha256)] if meta.sha256 else [],
        primary_package_purpose=PackagePurpose.OPERATING_SYSTEM,
        comment=f"RAUC compatible: {meta.compatible}" if meta.compatible else None,
    )
    packages = [_package(i, c) for i, c in enumerate(components, 1)]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, _ROOT)]
    relationships += [Relationship(_ROOT, RelationshipType.CONTAINS, p.spdx_id) for p in packages]
    doc = Document(creation_info=info, packages=[root, *packages], relationships=relationships)
    out = io.StringIO()
    try:
        write_document_to_stream(doc, out, validate=True)
    except ValueError as e:
        raise SbomError(f"the SPDX 2.3 export is not valid: {e}") from e
    return out.getvalue()
