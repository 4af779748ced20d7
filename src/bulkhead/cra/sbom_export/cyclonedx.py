"""Components → a CycloneDX 1.6 JSON BOM, built and written with cyclonedx-python-lib.

The release is the metadata component (type operating-system) with its bundle's SHA-256 and a `bulkhead:compatible`
property; it depends on every component. CycloneDX has one `cpe` field: further CPEs go to `bulkhead:cpe`
properties. The source package goes to `debian:source`/`debian:source_version` for Debian packages (as the
reference image has always written them) and to `bulkhead:source_name`/`bulkhead:source_version` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component as CdxComponent
from cyclonedx.model.component import ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from ..components._common import hash_algorithm
from ..model import Component
from ._meta import TOOL, ReleaseMeta, document_uuid

__all__ = ["export_cyclonedx"]

_ALGORITHMS = {hash_algorithm(a.value): a for a in HashAlgorithm}


def _hashes(hashes: Sequence[tuple[str, str]]) -> list[HashType]:
    return [HashType(alg=_ALGORITHMS[alg], content=value) for alg, value in hashes if alg in _ALGORITHMS]


def _purl(text: str | None) -> PackageURL | None:
    if not text:
        return None
    try:
        return PackageURL.from_string(text)
    except ValueError:
        return None  # not a package URL: a CycloneDX purl must be one


def _properties(c: Component) -> list[Property]:
    props = [Property(name="bulkhead:cpe", value=cpe) for cpe in c.cpes[1:]]
    if c.source_name:
        prefix, name_key = ("debian:", "source") if c.distro == "debian" else ("bulkhead:", "source_name")
        props.append(Property(name=prefix + name_key, value=c.source_name))
        if c.source_version:
            props.append(Property(name=prefix + "source_version", value=c.source_version))
    return props


def _component(c: Component, ref: str) -> CdxComponent:
    return CdxComponent(
        type=ComponentType.LIBRARY,
        name=c.name,
        version=c.version or None,
        bom_ref=ref,
        purl=_purl(c.purl),
        cpe=c.cpes[0] if c.cpes else None,
        supplier=OrganizationalEntity(name=c.supplier) if c.supplier else None,
        hashes=_hashes(c.hashes),
        properties=_properties(c),
    )


def export_cyclonedx(meta: ReleaseMeta, components: Sequence[Component]) -> str:
    """A CycloneDX 1.6 JSON BOM of the release and its components."""
    bom = Bom(serial_number=document_uuid(meta, components, "cyclonedx"), version=1)
    bom.metadata.timestamp = meta.created
    bom.metadata.tools.components.add(CdxComponent(type=ComponentType.APPLICATION, name=TOOL))
    root = CdxComponent(
        type=ComponentType.OPERATING_SYSTEM,
        name=meta.name,
        version=meta.version,
        bom_ref="release",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=meta.sha256)] if meta.sha256 else None,
        properties=[Property(name="bulkhead:compatible", value=meta.compatible)] if meta.compatible else None,
    )
    bom.metadata.component = root
    parts = [_component(c, f"component-{i}") for i, c in enumerate(components, 1)]
    for part in parts:
        bom.components.add(part)
    bom.register_dependency(root, parts)
    return JsonV1Dot6(bom).output_as_string(indent=1)
