"""SPDX 2.2/2.3 JSON → components, read with spdx-tools; a Yocto image SBOM is many documents linked by reference.

Yocto's create-spdx (2.2) deploys one image document that CONTAINS the installed packages of per-package
documents; each package is GENERATED_FROM a recipe package in a recipe document that carries the CPEs
(CVE_PRODUCT) and `sourceInfo: "CVEs fixed: …"`. A single document (SPDX 2.3 from the reference Debian image)
lists the packages an image package CONTAINS, with purls. Installed packages become components; the recipe
(or the Debian source package) becomes the component's source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from spdx_tools.spdx.model.actor import Actor
from spdx_tools.spdx.model.document import Document
from spdx_tools.spdx.model.package import ExternalPackageRefCategory, Package
from spdx_tools.spdx.model.relationship import RelationshipType
from spdx_tools.spdx.parser.error import SPDXParsingError
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser

from ..errors import SbomContentError
from ..model import Component, ComponentOrigin
from ._common import distro_release, hash_algorithm, is_kernel, purl_facts, yocto_cves_fixed

__all__ = ["read_spdx2"]

_Key = tuple[str, str]  # (document namespace, SPDXID)
# "built from Debian source package openssl 3.0.15-1~deb12u1" (the reference image), "built from source package X V"
_SOURCE = re.compile(r"built from (?:Debian )?source package (\S+) (\S+)")


def _parse(raw: Mapping[str, Any], index: int) -> Document:
    try:
        return JsonLikeDictParser().parse(dict(raw))  # type: ignore[no-untyped-call]
    except SPDXParsingError as e:
        name = raw.get("name") or f"document #{index + 1}"
        messages: list[str] = e.get_messages()  # type: ignore[no-untyped-call]
        raise SbomContentError(f"SPDX document {name}: {'; '.join(messages[:3])}") from e


class _Graph:
    """The packages and relationships of one or more SPDX 2 documents, with DocumentRef-… resolved."""

    def __init__(self, docs: Sequence[Document]) -> None:
        self.packages: dict[_Key, Package] = {}
        self.edges: list[tuple[_Key, RelationshipType, _Key]] = []
        self.described: set[_Key] = set()
        self.namespaces = {d.creation_info.document_namespace for d in docs}
        for doc in docs:
            ns = doc.creation_info.document_namespace
            for p in doc.packages:
                self.packages[(ns, p.spdx_id)] = p
        for doc in docs:
            ns = doc.creation_info.document_namespace
            refs = {r.document_ref_id: r.document_uri for r in doc.creation_info.external_document_refs}
            for rel in doc.relationships:
                target = rel.related_spdx_element_id
                if not isinstance(target, str):  # NONE / NOASSERTION
                    continue
                a, b = self._resolve(ns, refs, rel.spdx_element_id), self._resolve(ns, refs, target)
                if rel.relationship_type == RelationshipType.DESCRIBES and rel.spdx_element_id == "SPDXRef-DOCUMENT":
                    self.described.add(b)
                self.edges.append((a, rel.relationship_type, b))

    @staticmethod
    def _resolve(ns: str, refs: dict[str, str], element: str) -> _Key:
        if element.startswith("DocumentRef-") and ":" in element:
            ref, _, local = element.partition(":")
            return (refs.get(ref, ref), local)
        return (ns, element)

    def installed(self) -> list[_Key]:
        """Packages some package CONTAINS (an image's content); failing that, the document's versioned packages."""
        contained: list[_Key] = []
        for a, kind, b in self.edges:
            if kind != RelationshipType.CONTAINS or a not in self.packages:
                continue
            if b not in self.packages:
                if b[0] not in self.namespaces:
                    raise SbomContentError(
                        f"the SBOM refers to {b[1]} in document {b[0]}, which was not given: "
                        "pass every document of the image SBOM (all members of the .spdx.tar.zst)"
                    )
                continue  # a file, not a package
            contained.append(b)
        if contained:
            return list(dict.fromkeys(contained))
        versioned = [k for k, p in self.packages.items() if p.version]
        # a document without CONTAINS: its versioned packages that are not only the described root (the Debian
        # reference SBOM), else the described ones (a lone Yocto recipe or package document)
        return [k for k in versioned if k not in self.described] or versioned

    def generated_from(self, key: _Key) -> Package | None:
        for a, kind, b in self.edges:
            if a == key and kind == RelationshipType.GENERATED_FROM and b in self.packages:
                return self.packages[b]
        return None


def _refs(p: Package | None, category: ExternalPackageRefCategory, types: tuple[str, ...]) -> list[str]:
    if p is None:
        return []
    return [r.locator for r in p.external_references if r.category == category and r.reference_type.rsplit("/", 1)[-1] in types]


def _component(p: Package, recipe: Package | None) -> Component:
    cpes = tuple(
        dict.fromkeys(
            _refs(recipe, ExternalPackageRefCategory.SECURITY, ("cpe23Type", "cpe22Type"))
            + _refs(p, ExternalPackageRefCategory.SECURITY, ("cpe23Type", "cpe22Type"))
        )
    )
    purls = _refs(p, ExternalPackageRefCategory.PACKAGE_MANAGER, ("purl",))
    purl = purls[0] if purls else None
    facts = purl_facts(purl)
    distro, release = distro_release(facts.get("distro"))
    source_name = recipe.name if recipe is not None else facts.get("upstream")
    source_version = recipe.version if recipe is not None else None
    if recipe is None and p.source_info and (m := _SOURCE.search(p.source_info)):
        source_name, source_version = m.group(1), m.group(2)
    if source_name and not source_version:
        source_version = p.version
    if distro is None and facts.get("type") == "deb":
        distro = facts.get("namespace")
    statements = yocto_cves_fixed(recipe.source_info if recipe is not None else p.source_info)
    return Component(
        name=p.name,
        version=p.version or "",
        origin=ComponentOrigin.SPDX,
        purl=purl,
        cpes=cpes,
        source_name=source_name,
        source_version=source_version,
        distro=distro,
        distro_release=release,
        is_kernel=is_kernel([source_name, p.name], cpes),
        statements=statements,
        supplier=p.supplier.name if isinstance(p.supplier, Actor) and p.supplier.name else None,
        hashes=tuple(sorted((hash_algorithm(c.algorithm.name), c.value.lower()) for c in p.checksums)),
    )


def read_spdx2(documents: Sequence[Mapping[str, Any]]) -> list[Component]:
    """The installed components of an SPDX 2.2/2.3 SBOM given as one or more parsed JSON documents."""
    if not documents:
        raise SbomContentError("no SPDX document given")
    graph = _Graph([_parse(raw, i) for i, raw in enumerate(documents)])
    out = []
    for key in graph.installed():
        p = graph.packages[key]
        out.append(_component(p, graph.generated_from(key)))
    return out
