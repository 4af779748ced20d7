"""NVD CVE API 2.0 items (an API response, or one bare `cve` object as the FKIE feed stores it) → VulnRecord. Pure.

CPE configurations: every `cpeMatch` marked `vulnerable` is kept with its version range; nodes that only name the
platform a product runs on (vulnerable: false, the second half of an AND) are kept as not vulnerable, so a matcher
never takes a platform for the vulnerable product. Node operators and negation are not evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .cve5 import parse_datetime, parse_severity
from .errors import VulnRecordError
from .vulnrecord import CpeMatch, CvssMetric, VulnRecord

__all__ = ["parse_nvd_cve", "parse_nvd_response"]

_METRIC_KEYS = {"cvssMetricV40": "4.0", "cvssMetricV31": "3.1", "cvssMetricV30": "3.0"}


def _opt(m: Mapping[str, Any], key: str) -> str | None:
    v = m.get(key)
    return v if isinstance(v, str) and v else None


def _metrics(cve: str, raw: Any) -> list[CvssMetric]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise VulnRecordError(cve, "metrics must be an object")
    out = []
    for key, version in _METRIC_KEYS.items():
        for m in raw.get(key, []):
            data = m.get("cvssData") if isinstance(m, Mapping) else None
            if not isinstance(data, Mapping) or not isinstance(data.get("baseScore"), int | float):
                raise VulnRecordError(cve, f"metrics.{key} item without cvssData.baseScore")
            source = f"nvd:{m.get('source', '')} ({m.get('type', '')})"
            severity = parse_severity(data.get("baseSeverity") or m.get("baseSeverity"))
            out.append(CvssMetric(version, float(data["baseScore"]), severity, str(data.get("vectorString", "")), source))
    return out


def _configurations(cve: str, raw: Any) -> list[CpeMatch]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise VulnRecordError(cve, "configurations must be a list")
    out = []
    for conf in raw:
        for node in conf.get("nodes", []) if isinstance(conf, Mapping) else []:
            for m in node.get("cpeMatch", []) if isinstance(node, Mapping) else []:
                if not isinstance(m, Mapping) or not isinstance(m.get("criteria"), str):
                    raise VulnRecordError(cve, "configurations: a cpeMatch item has no criteria")
                out.append(
                    CpeMatch(
                        criteria=m["criteria"],
                        vulnerable=bool(m.get("vulnerable", False)),
                        version_start_including=_opt(m, "versionStartIncluding"),
                        version_start_excluding=_opt(m, "versionStartExcluding"),
                        version_end_including=_opt(m, "versionEndIncluding"),
                        version_end_excluding=_opt(m, "versionEndExcluding"),
                    )
                )
    return out


def parse_nvd_cve(cve_obj: Any) -> VulnRecord:
    """One NVD 2.0 `cve` object (the API's vulnerabilities[].cve, or a FKIE feed file)."""
    if not isinstance(cve_obj, Mapping) or not isinstance(cve_obj.get("id"), str):
        raise VulnRecordError(None, "not an NVD 2.0 cve object: the id is missing")
    cve = cve_obj["id"]
    status = str(cve_obj.get("vulnStatus", ""))
    descriptions = tuple(
        (str(d.get("lang", "")), str(d.get("value", ""))) for d in cve_obj.get("descriptions", []) if isinstance(d, Mapping)
    )
    return VulnRecord(
        id=cve,
        state="REJECTED" if status == "Rejected" else "PUBLISHED",
        descriptions=descriptions,
        cpe_matches=tuple(_configurations(cve, cve_obj.get("configurations"))),
        metrics=tuple(_metrics(cve, cve_obj.get("metrics"))),
        published=parse_datetime(cve_obj.get("published")),
        updated=parse_datetime(cve_obj.get("lastModified")),
        source="nvd",
    )


def parse_nvd_response(doc: Any) -> list[VulnRecord]:
    """An NVD CVE API 2.0 response page: every vulnerabilities[].cve."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("vulnerabilities"), list):
        raise VulnRecordError(None, "not an NVD CVE API 2.0 response: vulnerabilities is missing")
    out = []
    for i, item in enumerate(doc["vulnerabilities"]):
        if not isinstance(item, Mapping) or "cve" not in item:
            raise VulnRecordError(None, f"NVD response: vulnerabilities[{i}] has no cve object")
        out.append(parse_nvd_cve(item["cve"]))
    return out
