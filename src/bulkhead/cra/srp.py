"""Submissions for ENISA's Single Reporting Platform, pure: which fields each submission carries, as JSON and HTML.

The case's fields are gathered by the server (product, affected versions, Member States, device counts, CVE ids,
exploitation, mitigations, corrective measure); this module picks the ones each Article 14 submission asks for and
renders a printable HTML page from them (every value escaped, no template engine).
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["EU_MEMBER_STATES", "SUBMISSION_FIELDS", "render_html", "submission_document"]

# ISO 3166-1 alpha-2 codes of the 27 EU Member States (Greece is GR in ISO, EL in some EU documents: both are read).
EU_MEMBER_STATES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)

_EARLY = ("product", "cve_ids", "exploitation", "member_states", "suspected_malicious")
_NOTIFICATION = (*_EARLY, "affected_versions", "devices", "severity", "description", "mitigations", "corrective_measure")
_FINAL = (*_NOTIFICATION, "countries_outside_eu", "corrective_measure_progress")
# Article 14(2) and (4): what the early warning, the notification and the final report each carry.
SUBMISSION_FIELDS: dict[str, tuple[str, ...]] = {
    "early_warning": _EARLY,
    "notification": _NOTIFICATION,
    "final_report": _FINAL,
}
_TITLES = {
    "early_warning": "Early warning",
    "notification": "Notification",
    "final_report": "Final report",
}


def submission_document(submission: str, case: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The submission's document: which case, when it is due, and the fields it carries (absent ones as null)."""
    names = SUBMISSION_FIELDS[submission]
    return {
        "format": "bulkhead-cra-submission/1",
        "submission": submission,
        "case": {
            "id": case["id"],
            "kind": case["kind"],
            "title": case["title"],
            "awareness_at": case["awareness_at"],
            "due": case["deadlines"].get(submission),
        },
        "fields": {name: fields.get(name) for name in names},
    }


def _value(v: Any) -> str:
    if v is None or v == [] or v == {}:
        return "<em>none</em>"
    if isinstance(v, (str, int, float, bool)):
        return html.escape(str(v))
    if isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v):
        return html.escape(", ".join(str(x) for x in v))
    if isinstance(v, dict) and all(isinstance(x, (str, int, float, bool)) or x is None for x in v.values()):
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_value(x)}</td></tr>" for k, x in v.items())
        return f"<table>{rows}</table>"
    return f"<pre>{html.escape(json.dumps(v, indent=2, sort_keys=True))}</pre>"


def render_html(doc: dict[str, Any]) -> str:
    """A printable page of a submission document; every value from the case is escaped."""
    case = doc["case"]
    title = f"{_TITLES[doc['submission']]} — case {case['id']}: {case['title']}"
    head = "".join(f"<tr><th>{html.escape(k)}</th><td>{_value(case[k])}</td></tr>" for k in ("kind", "awareness_at", "due"))
    rows = "".join(
        f"<tr><th>{html.escape(name.replace('_', ' '))}</th><td>{_value(v)}</td></tr>" for name, v in doc["fields"].items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}"
        "@media print{body{margin:0}}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        "<p>Prepared for ENISA's Single Reporting Platform (CRA Article 14).</p>"
        f"<table>{head}</table><h2>Fields</h2><table>{rows}</table></body></html>\n"
    )
