"""SBOMs of a Debian rootfs from its dpkg database, pure: SPDX 2.3 JSON and CycloneDX 1.6 JSON.

The documents are written by bulkhead.cra.sbom_export (the standards' libraries), as the server's export is.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bulkhead.cra.model import Component, ComponentOrigin
from bulkhead.cra.sbom_export import ReleaseMeta, export_cyclonedx, export_spdx2

__all__ = ["Package", "components", "cyclonedx", "parse_dpkg_status", "purl", "spdx", "write_sboms"]


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str
    source: str  # the source package name (for security trackers), the binary name if the same
    source_version: str
    maintainer: str = ""
    homepage: str = ""


def parse_dpkg_status(text: str) -> list[Package]:
    """The installed packages of a dpkg `status` file (stanzas whose Status ends in 'installed'), sorted."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if not fields.get("Package") or not fields.get("Status", "").endswith(" installed"):
            continue
        version = fields.get("Version", "")
        source, source_version = fields["Package"], version
        if fields.get("Source"):
            m = re.match(r"^(\S+)(?:\s+\((\S+)\))?$", fields["Source"])
            if m:
                source, source_version = m.group(1), m.group(2) or version
        out.append(
            Package(
                fields["Package"],
                version,
                fields.get("Architecture", ""),
                source,
                source_version,
                fields.get("Maintainer", ""),
                fields.get("Homepage", ""),
            )
        )
    return sorted(out, key=lambda p: (p.name, p.architecture))


def purl(p: Package, distro: str = "debian-12") -> str:
    """The package URL (purl spec, type deb) of an installed Debian package."""
    qualifiers = f"arch={p.architecture}&distro={distro}"
    if p.source != p.name:
        qualifiers += f"&upstream={quote(p.source, safe='')}"
    return f"pkg:deb/debian/{quote(p.name, safe='')}@{quote(p.version, safe='')}?{qualifiers}"


def components(packages: list[Package], distro: str = "debian-12") -> list[Component]:
    """The installed Debian packages as components: purl, Debian source package, maintainer as supplier."""
    return [
        Component(
            name=p.name,
            version=p.version,
            origin=ComponentOrigin.INVENTORY,
            purl=purl(p, distro),
            source_name=p.source,
            source_version=p.source_version,
            distro="debian",
            supplier=p.maintainer or None,
        )
        for p in packages
    ]


def _meta(name: str, version: str, created: dt.datetime) -> ReleaseMeta:
    return ReleaseMeta(name=name, version=version, created=created)


def spdx(packages: list[Package], name: str, version: str, created: dt.datetime) -> dict[str, Any]:
    """An SPDX 2.3 document (spdx-tools): the image as the described package, which CONTAINS every Debian package."""
    doc: dict[str, Any] = json.loads(export_spdx2(_meta(name, version, created), components(packages)))
    return doc


def cyclonedx(packages: list[Package], name: str, version: str, created: dt.datetime) -> dict[str, Any]:
    """A CycloneDX 1.6 BOM (cyclonedx-python-lib): the image as the metadata component, one component per package."""
    doc: dict[str, Any] = json.loads(export_cyclonedx(_meta(name, version, created), components(packages)))
    return doc


def write_sboms(packages: list[Package], name: str, version: str, created: dt.datetime, out: Path) -> tuple[Path, Path]:
    """The image's `sbom.spdx.json` (SPDX 2.3) and `sbom.cdx.json` (CycloneDX 1.6) in `out`, as the libraries write
    them (the same inputs give the same bytes)."""
    meta, parts = _meta(name, version, created), components(packages)
    spdx_path, cdx_path = out / "sbom.spdx.json", out / "sbom.cdx.json"
    spdx_path.write_text(export_spdx2(meta, parts))
    cdx_path.write_text(export_cyclonedx(meta, parts))
    return spdx_path, cdx_path
