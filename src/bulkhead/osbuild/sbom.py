"""SBOMs of a Debian rootfs from its dpkg database, pure: SPDX 2.3 JSON and CycloneDX 1.6 JSON."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .layout import stable_uuid

__all__ = ["Package", "cyclonedx", "parse_dpkg_status", "purl", "spdx"]


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


def _spdx_id(p: Package) -> str:
    return "SPDXRef-Package-" + re.sub(r"[^A-Za-z0-9.-]", "-", f"{p.name}-{p.architecture}")


def spdx(packages: list[Package], name: str, version: str, created: dt.datetime) -> dict[str, Any]:
    """An SPDX 2.3 document: the image as the described package, which CONTAINS every Debian package."""
    image_id = "SPDXRef-Image"
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}-{version}",
        "documentNamespace": f"https://bulkhead.invalid/spdx/{name}/{version}/{stable_uuid(name, version, 'spdx')}",
        "creationInfo": {"created": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "creators": ["Tool: bulkhead-osbuild"]},
        "documentDescribes": [image_id],
        "packages": [
            {
                "SPDXID": image_id,
                "name": name,
                "versionInfo": version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "primaryPackagePurpose": "OPERATING-SYSTEM",
            }
        ],
        "relationships": [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}],
    }
    for p in packages:
        entry: dict[str, Any] = {
            "SPDXID": _spdx_id(p),
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "supplier": f"Organization: {p.maintainer}" if p.maintainer else "NOASSERTION",
            "sourceInfo": f"built from Debian source package {p.source} {p.source_version}",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl(p)}],
        }
        if p.homepage:
            entry["homepage"] = p.homepage
        doc["packages"].append(entry)
        doc["relationships"].append(
            {"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": _spdx_id(p)}
        )
    return doc


def cyclonedx(packages: list[Package], name: str, version: str, created: dt.datetime) -> dict[str, Any]:
    """A CycloneDX 1.6 BOM: the image as the metadata component (type operating-system), one component per package."""
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{stable_uuid(name, version, 'cyclonedx')}",
        "version": 1,
        "metadata": {
            "timestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "bulkhead-osbuild"}]},
            "component": {"type": "operating-system", "bom-ref": "image", "name": name, "version": version},
        },
        "components": [
            {
                "type": "library",
                "bom-ref": purl(p),
                "name": p.name,
                "version": p.version,
                "purl": purl(p),
                **({"supplier": {"name": p.maintainer}} if p.maintainer else {}),
                "properties": [
                    {"name": "debian:source", "value": p.source},
                    {"name": "debian:source_version", "value": p.source_version},
                    {"name": "debian:architecture", "value": p.architecture},
                ],
            }
            for p in packages
        ],
        "dependencies": [{"ref": "image", "dependsOn": [purl(p) for p in packages]}],
    }
