"""The severity of an OSV record: its CVSS vectors scored with the `cvss` library (v4.0 before v3.x, the higher
score of a kind), else the database's own rating (GitHub advisories' LOW/MODERATE/HIGH/CRITICAL)."""

from __future__ import annotations

from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError

from .model import Severity
from .osv import OsvRecord

__all__ = ["osv_severity"]

_DATABASE = {
    "LOW": Severity.LOW,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "HIGH": Severity.HIGH,
    "CRITICAL": Severity.CRITICAL,
}
_KINDS = {"CVSS_V4": (CVSS4, 2), "CVSS_V3": (CVSS3, 1)}


def _score(kind: str, vector: str) -> tuple[int, float, Severity] | None:
    cls, rank = _KINDS.get(kind, (None, 0))
    if cls is None:
        return None
    try:
        c = cls(vector)
    except (CVSSError, ValueError, KeyError):
        return None  # a malformed vector is no severity, not a failed scan
    if isinstance(c, CVSS4):
        score, rating = float(c.base_score), str(c.severity)
    else:
        score, rating = float(c.scores()[0]), str(c.severities()[0])
    return rank, score, Severity(rating.lower()) if rating.lower() in Severity.__members__.values() else Severity.UNKNOWN


def osv_severity(record: OsvRecord) -> tuple[Severity, float | None]:
    """(rating, CVSS base score or None) of the record; (UNKNOWN, None) when it gives neither."""
    scored = [s for kind, vector in record.severity if (s := _score(kind, vector)) is not None]
    if scored:
        _, score, rating = max(scored, key=lambda s: (s[0], s[1]))
        return rating, score
    return _DATABASE.get(record.database_severity or "", Severity.UNKNOWN), None
