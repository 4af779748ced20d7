"""OSV records (osv.dev schema 1.x: Go vuln DB, GitHub advisories, distribution OSV) → OsvRecord. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .cve5 import parse_datetime
from .errors import VulnRecordError

__all__ = ["OsvAffected", "OsvRange", "OsvRecord", "parse_osv"]

_EVENTS = ("introduced", "fixed", "last_affected", "limit")


@dataclass(frozen=True)
class OsvRange:
    type: str  # "SEMVER", "ECOSYSTEM", "GIT"
    events: tuple[tuple[str, str], ...]  # (kind, version): introduced / fixed / last_affected / limit


@dataclass(frozen=True)
class OsvAffected:
    ecosystem: str  # "Go", "PyPI", "Debian:13", "Ubuntu:22.04:LTS", …
    name: str
    purl: str | None = None
    ranges: tuple[OsvRange, ...] = ()
    versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class OsvRecord:
    id: str
    aliases: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    summary: str = ""
    affected: tuple[OsvAffected, ...] = ()
    severity: tuple[tuple[str, str], ...] = ()  # (type, score) e.g. ("CVSS_V3", "CVSS:3.1/…")
    database_severity: str | None = None  # the database's own rating (GitHub advisories: LOW, MODERATE, HIGH, CRITICAL)
    published: dt.datetime | None = None
    modified: dt.datetime | None = None
    withdrawn: dt.datetime | None = None

    @property
    def cves(self) -> tuple[str, ...]:
        """The CVE ids this record is about: itself, its aliases, else (distribution records) its related ids."""
        own = tuple(i for i in (self.id, *self.aliases) if i.startswith("CVE-"))
        return own or tuple(i for i in self.related if i.startswith("CVE-"))


def _ranges(rid: str, raw: Any) -> tuple[OsvRange, ...]:
    out = []
    for r in raw or []:
        if not isinstance(r, Mapping) or not isinstance(r.get("events"), list) or not isinstance(r.get("type"), str):
            raise VulnRecordError(rid, "affected[].ranges items need a type and a list of events")
        events = []
        for e in r["events"]:
            kinds = [k for k in _EVENTS if isinstance(e, Mapping) and isinstance(e.get(k), str)]
            if len(kinds) != 1:
                raise VulnRecordError(rid, f"range event {e!r} must have exactly one of {', '.join(_EVENTS)}")
            events.append((kinds[0], str(e[kinds[0]])))
        out.append(OsvRange(r["type"], tuple(events)))
    return tuple(out)


def _database_severity(raw: Any) -> str | None:
    sev = raw.get("severity") if isinstance(raw, Mapping) else None
    return sev.strip().upper() if isinstance(sev, str) and sev.strip() else None


def parse_osv(doc: Any) -> OsvRecord:
    """Parse one OSV record; a malformed record raises VulnRecordError naming it."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str):
        raise VulnRecordError(None, "not an OSV record: the id is missing")
    rid = doc["id"]
    affected = []
    for a in doc.get("affected", []) or []:
        pkg = a.get("package") if isinstance(a, Mapping) else None
        if not isinstance(pkg, Mapping) or not isinstance(pkg.get("ecosystem"), str) or not isinstance(pkg.get("name"), str):
            raise VulnRecordError(rid, "affected[].package needs an ecosystem and a name")
        affected.append(
            OsvAffected(
                ecosystem=pkg["ecosystem"],
                name=pkg["name"],
                purl=pkg.get("purl") if isinstance(pkg.get("purl"), str) else None,
                ranges=_ranges(rid, a.get("ranges")),
                versions=tuple(v for v in a.get("versions", []) or [] if isinstance(v, str)),
            )
        )
    severity = tuple((str(s.get("type")), str(s.get("score"))) for s in doc.get("severity", []) or [] if isinstance(s, Mapping))
    return OsvRecord(
        id=rid,
        aliases=tuple(a for a in doc.get("aliases", []) or [] if isinstance(a, str)),
        related=tuple(a for a in doc.get("related", []) or [] if isinstance(a, str)),
        summary=str(doc.get("summary") or doc.get("details") or "")[:2000],
        affected=tuple(affected),
        severity=severity,
        database_severity=_database_severity(doc.get("database_specific")),
        published=parse_datetime(doc.get("published")),
        modified=parse_datetime(doc.get("modified")),
        withdrawn=parse_datetime(doc.get("withdrawn")),
    )
