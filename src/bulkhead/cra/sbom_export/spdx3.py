"""Components → an SPDX 3.0.1 JSON-LD document, built and written with spdx-python-model (SPDX's own bindings).

Why not spdx-tools: its SPDX 3 writer (0.8) predates 3.0.1. It inlines an old context (`https://spdx.org/rdf/Core/`),
writes unprefixed property names and enum names of its own, so what it writes is not valid 3.0.1 JSON-LD.
spdx-python-model is generated (shacl2code) from the SPDX 3.0.1 model, as Yocto's own SPDX 3 writer is; it checks
every property's type, pattern and cardinality when the document is built and written.

The document: an SpdxDocument whose root is a software_Sbom whose root is the release (a software_Package with
purpose operatingSystem, the bundle's sha256 in `verifiedUsing`, the compatible in its comment); the release
`contains` every component package (purl in `software_packageUrl`, CPEs as cpe23/cpe22 external identifiers,
supplier as an Organization it is `suppliedBy`, hashes in `verifiedUsing`); a source package (purpose source)
`generates` the packages built from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from spdx_python_model import v3_0_1 as spdx3

from ..components._common import hash_algorithm
from ..errors import SbomError
from ..model import Component
from ._meta import TOOL, ReleaseMeta, document_uuid

__all__ = ["export_spdx3"]

_ALGORITHMS = {hash_algorithm(name): iri for name, iri in spdx3.HashAlgorithm.NAMED_INDIVIDUALS.items()}


class _Builder:
    def __init__(self, meta: ReleaseMeta, base: str) -> None:
        self.base = base
        self.n = 0
        self.info = spdx3.CreationInfo(_id="_:creationinfo", specVersion="3.0.1", created=meta.created.replace(microsecond=0))
        self.agent = self.element(spdx3.SoftwareAgent, "agent", name=TOOL)
        self.info.createdBy = [self.agent]
        self.objects: list[Any] = [self.info, self.agent]
        self.suppliers: dict[str, Any] = {}
        self.sources: dict[tuple[str, str], Any] = {}

    def element(self, cls: Any, kind: str, **props: Any) -> Any:
        self.n += 1
        given = {k: v for k, v in props.items() if v is not None and v != []}  # the bindings refuse None
        return cls(_id=f"{self.base}{kind}-{self.n}", creationInfo=self.info, **given)

    def add(self, cls: Any, kind: str, **props: Any) -> Any:
        obj = self.element(cls, kind, **props)
        self.objects.append(obj)
        return obj

    def supplier(self, name: str) -> Any:
        if name not in self.suppliers:
            self.suppliers[name] = self.add(spdx3.Organization, "organization", name=name)
        return self.suppliers[name]

    def source(self, name: str, version: str) -> Any:
        if (name, version) not in self.sources:
            self.sources[(name, version)] = self.add(
                spdx3.software_Package,
                "source",
                name=name,
                software_packageVersion=version,
                software_primaryPurpose=spdx3.software_SoftwarePurpose.source,
            )
        return self.sources[(name, version)]


def _hashes(hashes: Sequence[tuple[str, str]]) -> list[Any]:
    return [spdx3.Hash(algorithm=_ALGORITHMS[alg], hashValue=value) for alg, value in hashes if alg in _ALGORITHMS]


def _identifiers(c: Component) -> list[Any]:
    return [
        spdx3.ExternalIdentifier(
            externalIdentifierType=spdx3.ExternalIdentifierType.cpe23
            if cpe.startswith("cpe:2.3:")
            else spdx3.ExternalIdentifierType.cpe22,
            identifier=cpe,
        )
        for cpe in c.cpes
    ]


def export_spdx3(meta: ReleaseMeta, components: Sequence[Component]) -> str:
    """An SPDX 3.0.1 JSON-LD document of the release and its components."""
    base = f"https://bulkhead.invalid/spdx3/{document_uuid(meta, components, 'spdx3')}/"
    try:
        b = _Builder(meta, base)
        release = b.add(
            spdx3.software_Package,
            "release",
            name=meta.name,
            software_packageVersion=meta.version,
            software_primaryPurpose=spdx3.software_SoftwarePurpose.operatingSystem,
            verifiedUsing=[spdx3.Hash(algorithm=spdx3.HashAlgorithm.sha256, hashValue=meta.sha256)] if meta.sha256 else [],
            comment=f"RAUC compatible: {meta.compatible}" if meta.compatible else None,
        )
        packages = []
        generated: dict[int, list[Any]] = {}
        for c in components:
            p = b.add(
                spdx3.software_Package,
                "package",
                name=c.name,
                software_packageVersion=c.version or None,
                software_packageUrl=c.purl or None,
                externalIdentifier=_identifiers(c),
                verifiedUsing=_hashes(c.hashes),
                suppliedBy=b.supplier(c.supplier) if c.supplier else None,
            )
            packages.append(p)
            if c.source_name:
                src = b.source(c.source_name, c.source_version or c.version)
                generated.setdefault(id(src), [src]).append(p)
        rels = []
        if packages:
            rels.append(
                b.add(
                    spdx3.Relationship,
                    "relationship",
                    from_=release,
                    relationshipType=spdx3.RelationshipType.contains,
                    to=packages,
                )
            )
        for src, *built in generated.values():
            rels.append(
                b.add(spdx3.Relationship, "relationship", from_=src, relationshipType=spdx3.RelationshipType.generates, to=built)
            )
        content = [release, *packages, *b.sources.values(), *b.suppliers.values(), *rels]
        sbom = b.add(spdx3.software_Sbom, "sbom", rootElement=[release], element=content)
        b.add(
            spdx3.SpdxDocument,
            "document",
            name=f"{meta.name}-{meta.version}",
            rootElement=[sbom],
            element=[sbom, *content],
            profileConformance=[spdx3.ProfileIdentifierType.core, spdx3.ProfileIdentifierType.software],
        )
        data = spdx3.JSONLDSerializer().serialize_data(spdx3.SHACLObjectSet(b.objects), force_at_graph=True)
    except (TypeError, ValueError) as e:  # the bindings refuse a value of the wrong type, pattern or cardinality
        raise SbomError(f"the SPDX 3.0.1 export is not valid: {e}") from e
    return json.dumps(data, indent=1)
