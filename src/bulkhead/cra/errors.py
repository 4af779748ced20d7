"""The error hierarchy of bulkhead.cra."""

from __future__ import annotations

__all__ = ["CraError", "SbomError"]


class CraError(Exception):
    """Base of CRA-tooling errors; the message says what is wrong and what to do."""


class SbomError(CraError):
    """A document is not an SBOM this project reads (SPDX 2.2/2.3 JSON, CycloneDX 1.4-1.6 JSON)."""
