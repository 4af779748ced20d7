"""CVE JSON 5 records (cvelistV5, vulnrichment) → VulnRecord: affected products and versions, CVSS, dates. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from .errors import VulnRecordError
from .model import Severity
from .vulnrecord import AffectedProduct, CpeMatch, CvssMetric, VersionEntry, VulnRecord

__all__ = ["parse_cve5", "parse_datetime", "parse_severity"]

_CVSS_KEYS = {"cvssV4_0": "4.0", "cvssV3_1": "3.1", "cvssV3_0": "3.0"}


def parse_datetime(value: Any) -> dt.datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC when the text has no offset); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


_SEVERITIES = {s.value: s for s in Severity}


def parse_severity(value: Any) -> Severity:
    """A CVSS base severity as written in a record (any case); UNKNOWN for anything else. A dict lookup: a feed of
    50,000 records calls this for every metric, and Severity(...)'s failure path costs an exception each time."""
    return _SEVERITIES.get(str(value).lower(), Severity.UNKNOWN)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _versions(cve: str, raw: Any) -> tuple[VersionEntry, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise VulnRecordError(cve, "affected[].versions must be a list")
    out = []
    for v in raw:
        if (
            not isinstance(v, dict)
            or not isinstance(v.get("version"), str)
            or v.get("status")
            not in (
                "affected",
                "unaffected",
                "unknown",
            )
        ):
            raise VulnRecordError(cve, f"affected[].versions item {v!r} needs a version string and a status")
        changes = tuple(
            (str(c.get("at")), str(c.get("status"))) for c in v.get("changes", []) if isinstance(c, dict) and c.get("at")
        )
        out.append(
            VersionEntry(
                status=v["status"],
                version=v["version"],
                less_than=_str(v.get("lessThan")),
                less_than_or_equal=_str(v.get("lessThanOrEqual")),
                version_type=_str(v.get("versionType")),
                changes=changes,
            )
        )
    return tuple(out)


def _affected(cve: str, container: Mapping[str, Any], name: str) -> list[AffectedProduct]:
    raw = container.get("affected", [])
    if not isinstance(raw, list):
        raise VulnRecordError(cve, f"{name}.affected must be a list")
    out = []
    for a in raw:
        if not isinstance(a, dict):
            raise VulnRecordError(cve, f"{name}.affected items must be objects")
        cpes = a.get("cpes", [])
        out.append(
            AffectedProduct(
                vendor=_str(a.get("vendor")),
                product=_str(a.get("product")),
                package_name=_str(a.get("packageName")),
                cpes=tuple(c for c in cpes if isinstance(c, str)) if isinstance(cpes, list) else (),
                versions=_versions(cve, a.get("versions")),
                default_status=_str(a.get("defaultStatus")),
                program_files=tuple(f for f in a.get("programFiles", []) if isinstance(f, str)),
                container=name,
            )
        )
    return out


def _metrics(container: Mapping[str, Any], name: str) -> list[CvssMetric]:
    out = []
    for m in container.get("metrics", []) if isinstance(container.get("metrics"), list) else []:
        if not isinstance(m, dict):
            continue
        for key, version in _CVSS_KEYS.items():
            c = m.get(key)
            if isinstance(c, dict) and isinstance(c.get("baseScore"), int | float):
                out.append(
                    CvssMetric(
                        version,
                        float(c["baseScore"]),
                        parse_severity(c.get("baseSeverity")),
                        str(c.get("vectorString", "")),
                        name,
                    )
                )
    return out


def _cpe_applicability(container: Mapping[str, Any]) -> list[CpeMatch]:
    out = []
    for conf in container.get("cpeApplicability", []) or []:
        for node in conf.get("nodes", []) if isinstance(conf, dict) else []:
            for m in node.get("cpeMatch", []) if isinstance(node, dict) else []:
                if isinstance(m, dict) and isinstance(m.get("criteria"), str):
                    out.append(
                        CpeMatch(
                            criteria=m["criteria"],
                            vulnerable=bool(m.get("vulnerable", True)),
                            version_start_including=_str(m.get("versionStartIncluding")),
                            version_start_excluding=_str(m.get("versionStartExcluding")),
                            version_end_including=_str(m.get("versionEndIncluding")),
                            version_end_excluding=_str(m.get("versionEndExcluding")),
                        )
                    )
    return out


def parse_cve5(doc: Any) -> VulnRecord:
    """Parse one CVE JSON 5.x record (as json.loads gives it: objects are dicts, checked with `dict`, which is about
    ten times cheaper than an ABC check over a million values); a malformed record raises VulnRecordError naming it."""
    if not isinstance(doc, dict):
        raise VulnRecordError(None, "a CVE JSON 5 record is a JSON object")
    raw_meta = doc.get("cveMetadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    cve = meta.get("cveId")
    if not isinstance(cve, str) or not cve.startswith("CVE-"):
        raise VulnRecordError(None, "not a CVE JSON 5 record: cveMetadata.cveId is missing")
    if doc.get("dataType") != "CVE_RECORD" or not str(doc.get("dataVersion", "")).startswith("5."):
        raise VulnRecordError(cve, f"dataType/dataVersion {doc.get('dataType')}/{doc.get('dataVersion')} is not CVE_RECORD 5.x")
    state = str(meta.get("state", "PUBLISHED"))
    containers = doc.get("containers")
    if not isinstance(containers, dict) or not isinstance(containers.get("cna"), dict):
        if state == "REJECTED":
            return VulnRecord(cve, state)
        raise VulnRecordError(cve, "containers.cna is missing")
    cna = containers["cna"]
    adps = [a for a in containers.get("adp", []) if isinstance(a, dict)] if isinstance(containers.get("adp"), list) else []
    parts: list[tuple[Mapping[str, Any], str]] = [(cna, "cna")]
    parts += [(a, "adp:" + str(a.get("providerMetadata", {}).get("shortName", "unknown"))) for a in adps]
    descriptions = tuple(
        (str(d.get("lang", "")), str(d.get("value", ""))) for d in cna.get("descriptions", []) if isinstance(d, dict)
    )
    return VulnRecord(
        id=cve,
        state=state,
        descriptions=descriptions,
        affected=tuple(a for c, n in parts for a in _affected(cve, c, n)),
        cpe_matches=tuple(m for c, _ in parts for m in _cpe_applicability(c)),
        metrics=tuple(m for c, n in parts for m in _metrics(c, n)),
        published=parse_datetime(meta.get("datePublished")),
        updated=parse_datetime(meta.get("dateUpdated")),
        source="cve5",
    )
