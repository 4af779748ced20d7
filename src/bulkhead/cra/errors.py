"""The error hierarchy of bulkhead.cra."""

from __future__ import annotations

__all__ = ["CraError", "InventoryError", "SbomContentError", "SbomError", "VulnRecordError"]


class CraError(Exception):
    """Base of CRA-tooling errors; the message says what is wrong and what to do."""


class SbomError(CraError):
    """A document is not an SBOM this project reads (SPDX 2.2/2.3 JSON, SPDX 3.0.1 JSON-LD, CycloneDX 1.4-1.6 JSON),
    or an SBOM cannot be written (an unknown export format, content the standard does not allow)."""


class SbomContentError(SbomError):
    """A document claims a supported SBOM format but its content cannot be read into components."""


class InventoryError(CraError):
    """A device's reported package inventory is not in the agent's format."""


class VulnRecordError(CraError):
    """A vulnerability record (CVE JSON 5, NVD API 2.0) is malformed; `record_id` names it when it is known."""

    def __init__(self, record_id: str | None, message: str) -> None:
        self.record_id = record_id
        super().__init__(f"{record_id or 'record without an id'}: {message}")
