"""File names under which devices download a release's artifacts (DDI artifact names, download file names)."""

from __future__ import annotations

import re

from ..models import Release

__all__ = ["artifact_filename", "delta_filename"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def artifact_filename(rel: Release) -> str:
    return _slug(f"{rel.compatible}-{rel.version}") + (".swu" if rel.format == "swu" else ".raucb")


def delta_filename(rel: Release, source_version: str) -> str:
    """The delta bundle that makes `rel` from `source_version`: a RAUC bundle, named apart from the full one."""
    return _slug(f"{rel.compatible}-{rel.version}-delta-from-{source_version}") + ".raucb"
