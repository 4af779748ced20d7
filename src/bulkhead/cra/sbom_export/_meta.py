"""What an exported SBOM says about the release itself, and the stable identity of the document."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..model import Component

__all__ = ["TOOL", "ReleaseMeta", "document_uuid"]

TOOL = "bulkhead"


@dataclass(frozen=True)
class ReleaseMeta:
    """The release an SBOM describes: its name (the compatible, or an image name), version and bundle digest."""

    name: str
    version: str
    created: dt.datetime  # when the document was made (a build's SOURCE_DATE_EPOCH for reproducible images)
    sha256: str | None = None  # the release bundle's sha256
    compatible: str | None = None  # the devices' RAUC compatible, when it differs from `name`


def document_uuid(meta: ReleaseMeta, components: Sequence[Component], fmt: str) -> uuid.UUID:
    """A UUID that changes with anything written (so SPDX namespaces and CycloneDX serials differ between contents)
    and stays the same for the same input (reproducible image builds)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([fmt, asdict(meta)], default=str, sort_keys=True).encode())
    for c in components:
        digest.update(json.dumps(asdict(c), default=str, sort_keys=True).encode())
    return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:bulkhead:sbom:{digest.hexdigest()}")
