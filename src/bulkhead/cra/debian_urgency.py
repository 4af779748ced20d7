"""Debian Security Tracker urgencies mapped onto the CVSS qualitative scale (model.Severity).

| tracker urgency       | Severity | why                                                                  |
|-----------------------|----------|----------------------------------------------------------------------|
| high                  | HIGH     | same word                                                            |
| medium                | MEDIUM   | same word                                                            |
| low                   | LOW      | same word                                                            |
| unimportant           | LOW      | a real but negligible issue for Debian; LOW keeps it visible at the  |
|                       |          | lowest level rather than NONE, which would read as "no issue" (Trivy |
|                       |          | maps it the same way)                                                |
| not yet assigned      | UNKNOWN  | the team has not rated it yet                                        |
| end-of-life           | UNKNOWN  | the package has no security support in that release: no rating       |
| anything else / empty | UNKNOWN  |                                                                      |

Older entries carry a ``**`` suffix ("high**"): it maps like the level without it. Debian has no "critical":
CVSS scores from NVD or CVE records are the place for that.
"""

from __future__ import annotations

from .model import Severity

__all__ = ["URGENCY_SEVERITY", "urgency_severity"]

URGENCY_SEVERITY: dict[str, Severity] = {
    "high": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "unimportant": Severity.LOW,
    "not yet assigned": Severity.UNKNOWN,
    "end-of-life": Severity.UNKNOWN,
}


def urgency_severity(urgency: str | None) -> Severity:
    if not urgency:
        return Severity.UNKNOWN
    return URGENCY_SEVERITY.get(urgency.strip().rstrip("*").strip().lower(), Severity.UNKNOWN)
