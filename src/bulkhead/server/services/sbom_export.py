"""A release's SBOM as the server knows it, exported as CycloneDX 1.6, SPDX 2.3 or SPDX 3.0.1 (viewer role).

The components are those of the release's uploaded SBOMs (every format it has, read once each and merged as the
vulnerability scans read them, purls compared canonical); the document adds the release: its compatible, version and
bundle sha256.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass

from packageurl import PackageURL
from sqlalchemy import select

from bulkhead.cra import CraError
from bulkhead.cra.model import Component
from bulkhead.cra.sbom_export import EXPORT_FORMATS, MEDIA_TYPES, ReleaseMeta, export_sbom

from ..errors import Invalid, NotFound, Unprocessable
from ..models import ReleaseSbom
from .auth import Principal
from .lookups import tenant_release
from .releases import ReleaseService
from .vuln_match import release_components

__all__ = ["SbomExport", "export_release_sbom"]

_SUFFIX = {"cyclonedx": "cdx.json", "spdx": "spdx.json", "spdx3": "spdx3.json"}


@dataclass(frozen=True)
class SbomExport:
    text: str
    media_type: str
    filename: str


def _canonical(purl: str | None) -> str | None:
    try:
        return PackageURL.from_string(purl).to_string() if purl else None
    except ValueError:
        return purl


def _merged(components: list[Component]) -> list[Component]:
    """One component per name, version and package URL, the URL compared canonical: a release's SPDX and CycloneDX
    SBOMs of the same image spell some purls differently (`1%3A2.38` and `1:2.38`)."""
    seen: dict[tuple[str, str, str | None], Component] = {}
    for c in components:
        seen.setdefault((c.name, c.version, _canonical(c.purl)), c)
    return list(seen.values())


def export_release_sbom(releases: ReleaseService, who: Principal, release_id: int, fmt: str) -> SbomExport:
    """Release `release_id`'s components and metadata as an SBOM document in `fmt` (cyclonedx, spdx, spdx3)."""
    who.require("viewer")
    if fmt not in EXPORT_FORMATS:
        raise Invalid(f"unknown SBOM export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    with releases.db.session() as s:
        rel = tenant_release(s, who.tenant_id, release_id)
        shas = list(s.scalars(select(ReleaseSbom.sha256).where(ReleaseSbom.release_id == rel.id).order_by(ReleaseSbom.format)))
        meta = ReleaseMeta(rel.compatible, rel.version, dt.datetime.now(dt.UTC), rel.sha256, rel.compatible)
        name = re.sub(r"[^A-Za-z0-9._+-]", "_", f"{rel.compatible}-{rel.version}")
    if not shas:
        raise NotFound(
            f"release {release_id} has no SBOM to export its components from; "
            f"attach one with 'bulkhead release sbom {release_id} FILE'"
        )
    try:
        docs = []
        for sha in shas:
            with releases.store.open(sha) as f:
                docs.append(json.load(f))
        components = _merged(release_components(docs))
        text = export_sbom(fmt, meta, components)
    except (OSError, ValueError) as e:
        raise Unprocessable(f"release {release_id}: a stored SBOM cannot be read ({e}); attach it again") from e
    except CraError as e:
        raise Unprocessable(f"release {release_id}: its SBOM cannot be exported: {e}; attach a valid SBOM") from e
    return SbomExport(text, MEDIA_TYPES[fmt], f"{name}.{_SUFFIX[fmt]}")
