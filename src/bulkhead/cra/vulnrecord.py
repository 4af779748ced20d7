"""The typed vulnerability record that the CVE JSON 5 and NVD API 2.0 parsers produce and the generic matcher reads."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .model import Severity

__all__ = ["AffectedProduct", "CpeMatch", "CvssMetric", "VersionEntry", "VulnRecord"]


@dataclass(frozen=True)
class VersionEntry:
    """One CVE 5 `versions` item: a single version, or a range from `version` up to `less_than`/`less_than_or_equal`."""

    status: str  # "affected", "unaffected", "unknown"
    version: str
    less_than: str | None = None
    less_than_or_equal: str | None = None
    version_type: str | None = None  # "semver", "custom", "git", "rpm", "python", …
    changes: tuple[tuple[str, str], ...] = ()  # (at, status): status changes inside the range


@dataclass(frozen=True)
class AffectedProduct:
    """One CVE 5 `affected` item (from the CNA or an ADP container)."""

    vendor: str | None
    product: str | None
    package_name: str | None = None
    cpes: tuple[str, ...] = ()
    versions: tuple[VersionEntry, ...] = ()
    default_status: str | None = None  # "affected", "unaffected", "unknown"; absent means unknown
    program_files: tuple[str, ...] = ()
    container: str = "cna"  # "cna" or "adp:<shortName>"


@dataclass(frozen=True)
class CpeMatch:
    """A vulnerable CPE with an optional version range (NVD configurations, CVE 5 cpeApplicability)."""

    criteria: str
    vulnerable: bool = True
    version_start_including: str | None = None
    version_start_excluding: str | None = None
    version_end_including: str | None = None
    version_end_excluding: str | None = None


@dataclass(frozen=True)
class CvssMetric:
    version: str  # "3.0", "3.1", "4.0"
    base_score: float
    base_severity: Severity
    vector: str
    source: str  # "cna", "adp:CISA-ADP", "nvd:nvd@nist.gov (Primary)"


@dataclass(frozen=True)
class VulnRecord:
    id: str
    state: str = "PUBLISHED"  # or "REJECTED"
    descriptions: tuple[tuple[str, str], ...] = ()  # (lang, text)
    affected: tuple[AffectedProduct, ...] = ()
    cpe_matches: tuple[CpeMatch, ...] = ()
    metrics: tuple[CvssMetric, ...] = ()
    published: dt.datetime | None = None
    updated: dt.datetime | None = None
    source: str = "cve5"  # "cve5" or "nvd"

    @property
    def description(self) -> str:
        for lang, text in self.descriptions:
            if lang.lower().startswith("en"):
                return text
        return self.descriptions[0][1] if self.descriptions else ""

    def best_metric(self) -> CvssMetric | None:
        """The CVSS metric to show: the newest CVSS version, the record's own source (CNA, NVD Primary) first."""

        def rank(m: CvssMetric) -> tuple[float, int]:
            return (float(m.version), 1 if m.source in ("cna",) or m.source.endswith("(Primary)") else 0)

        return max(self.metrics, key=rank, default=None)

    @property
    def severity(self) -> Severity:
        best = self.best_metric()
        return best.base_severity if best else Severity.UNKNOWN
