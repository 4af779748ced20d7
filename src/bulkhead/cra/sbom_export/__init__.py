"""A release's components → an SBOM document: CycloneDX 1.6, SPDX 2.3 or SPDX 3.0.1 JSON, one writer per format.

Each writer builds the document with its standard's library (cyclonedx-python-lib, spdx-tools, spdx-python-model)
and returns its JSON text. What is written of each component: name, version, purl, CPEs, supplier, hashes and the
source package (Debian source, Yocto recipe); of the release: what it is for (compatible), its version and the
sha256 of its bundle. `bulkhead.cra.components` reads every written document back to the same components.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import SbomError
from ..model import Component
from ._meta import ReleaseMeta
from .cyclonedx import export_cyclonedx
from .spdx2 import export_spdx2
from .spdx3 import export_spdx3

__all__ = ["EXPORT_FORMATS", "MEDIA_TYPES", "ReleaseMeta", "export_cyclonedx", "export_sbom", "export_spdx2", "export_spdx3"]

_WRITERS: dict[str, Callable[[ReleaseMeta, Sequence[Component]], str]] = {
    "cyclonedx": export_cyclonedx,
    "spdx": export_spdx2,
    "spdx3": export_spdx3,
}
EXPORT_FORMATS = tuple(_WRITERS)
MEDIA_TYPES = {
    "cyclonedx": "application/vnd.cyclonedx+json",
    "spdx": "application/spdx+json",
    "spdx3": "application/spdx+json",
}


def export_sbom(fmt: str, meta: ReleaseMeta, components: Sequence[Component]) -> str:
    """The SBOM of a release in `fmt` (cyclonedx: CycloneDX 1.6, spdx: SPDX 2.3, spdx3: SPDX 3.0.1), as JSON text."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise SbomError(f"unknown SBOM export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    return writer(meta, components)
