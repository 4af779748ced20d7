"""Parse SWUpdate's sw-description (libconfig syntax) into what a release needs: pure, no I/O."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import libconf

from .errors import SwuError

__all__ = ["Artifact", "SwDescription", "parse_sw_description"]

# Lists of sw-description whose entries may name a file of the archive.
_SECTIONS = ("images", "files", "scripts", "partitions", "bootenv")
_HINT = "see SWUpdate's sw-description documentation; build the image with 'swugenerator' or 'bulkhead swu create'"


@dataclass(frozen=True)
class Artifact:
    filename: str
    sha256: str
    section: str
    handler: str


@dataclass(frozen=True)
class SwDescription:
    version: str
    description: str
    hardware_compatibility: tuple[str, ...]
    artifacts: tuple[Artifact, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "description": self.description,
            "hardware_compatibility": list(self.hardware_compatibility),
            "artifacts": [
                {"filename": a.filename, "sha256": a.sha256, "section": a.section, "handler": a.handler} for a in self.artifacts
            ],
        }


def _entries(node: Mapping[str, Any], depth: int = 0) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Artifact entries of the software group, also inside board or selection subgroups (two levels)."""
    for key, value in node.items():
        if key in _SECTIONS and isinstance(value, list | tuple):
            for entry in value:
                if isinstance(entry, Mapping):
                    yield key, entry
        elif isinstance(value, Mapping) and depth < 2:
            yield from _entries(value, depth + 1)


def parse_sw_description(text: str) -> SwDescription:
    """Parse sw-description; every artifact that names a file must carry its sha256."""
    try:
        root = libconf.load(io.StringIO(text))
    except Exception as exc:  # libconf raises ConfigParseError and ValueError on bad syntax
        raise SwuError(f"sw-description is not valid libconfig: {exc}", _HINT) from exc
    software = root.get("software")
    if not isinstance(software, Mapping):
        raise SwuError("sw-description has no 'software' group", _HINT)
    version = software.get("version")
    if not isinstance(version, str) or not version.strip():
        raise SwuError("sw-description has no software.version; releases need one", 'set version = "1.2.3";')
    hw = software.get("hardware-compatibility", ())
    if not isinstance(hw, list | tuple) or not all(isinstance(h, str) for h in hw):
        raise SwuError("software.hardware-compatibility must be a list of revision strings", _HINT)
    artifacts: list[Artifact] = []
    for section, entry in _entries(software):
        name = entry.get("filename")
        if name is None:
            continue  # inline scripts, bootenv settings: nothing in the archive
        sha = entry.get("sha256")
        if not isinstance(name, str) or not isinstance(sha, str) or len(sha) != 64:
            raise SwuError(
                f"{section} entry {name!r} has no valid sha256",
                'SWUpdate built for signed images refuses artifacts without one; add sha256 = "<hex>";',
            )
        artifacts.append(Artifact(name, sha.lower(), section, str(entry.get("type", ""))))
    return SwDescription(version.strip(), str(software.get("description", "")), tuple(hw), tuple(artifacts))
