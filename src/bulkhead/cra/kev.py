"""The CISA Known Exploited Vulnerabilities catalogue (known_exploited_vulnerabilities.json), parsed.

Kept per CVE: vendor, product, name, the date CISA added it (the "exploited since" evidence), the remediation due
date for US federal agencies, and whether use in ransomware campaigns is known. The catalogue states its own
``count``; a document whose list does not have that many entries is refused (a cut or edited copy).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .feed_errors import FeedFormatError
from .feedfile import open_feed_file

__all__ = ["KevCatalog", "KevEntry", "load_kev", "parse_kev", "read_kev"]

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
_URL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"


@dataclass(frozen=True, slots=True)
class KevEntry:
    cve: str
    vendor_project: str
    product: str
    name: str
    date_added: dt.date
    due_date: dt.date | None
    ransomware_known: bool  # knownRansomwareCampaignUse == "Known" ("Unknown" otherwise)


@dataclass(frozen=True)
class KevCatalog:
    version: str  # catalogVersion, e.g. "2025.08.25"
    released: dt.datetime  # dateReleased
    entries: Mapping[str, KevEntry]

    def get(self, cve: str) -> KevEntry | None:
        return self.entries.get(cve)

    def __contains__(self, cve: object) -> bool:
        return cve in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[KevEntry]:
        return iter(self.entries.values())


def _fail(msg: str) -> FeedFormatError:
    return FeedFormatError(f"not a CISA KEV catalogue: {msg} (get it from {_URL})")


def _date(raw: Any, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(raw)[:10])
    except ValueError:
        raise _fail(f"{what} is not a date: {raw!r}") from None


def parse_kev(doc: Any) -> KevCatalog:
    """The catalogue from its decoded JSON document."""
    if not isinstance(doc, dict):
        raise _fail("the document is not a JSON object")
    missing = [k for k in ("catalogVersion", "dateReleased", "count", "vulnerabilities") if k not in doc]
    if missing:
        raise _fail(f"missing {', '.join(missing)}")
    vulns = doc["vulnerabilities"]
    if not isinstance(vulns, list):
        raise _fail("'vulnerabilities' is not a list")
    if doc["count"] != len(vulns):
        raise _fail(f"'count' says {doc['count']} but the list has {len(vulns)} entries: a cut or edited copy")
    try:
        released = dt.datetime.fromisoformat(str(doc["dateReleased"]))
    except ValueError:
        raise _fail(f"dateReleased is not a timestamp: {doc['dateReleased']!r}") from None
    entries: dict[str, KevEntry] = {}
    for i, v in enumerate(vulns):
        if not isinstance(v, dict):
            raise _fail(f"entry {i} is not an object")
        cve = v.get("cveID")
        if not isinstance(cve, str) or not _CVE.match(cve):
            raise _fail(f"entry {i} has no valid cveID: {cve!r}")
        entries[cve] = KevEntry(
            cve=cve,
            vendor_project=str(v.get("vendorProject") or ""),
            product=str(v.get("product") or ""),
            name=str(v.get("vulnerabilityName") or ""),
            date_added=_date(v.get("dateAdded"), f"{cve} dateAdded"),
            due_date=_date(v["dueDate"], f"{cve} dueDate") if v.get("dueDate") else None,
            ransomware_known=v.get("knownRansomwareCampaignUse") == "Known",
        )
    return KevCatalog(version=str(doc["catalogVersion"]), released=released, entries=entries)


def read_kev(stream: IO[bytes]) -> KevCatalog:
    try:
        doc = json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(f"not JSON ({e})") from None
    return parse_kev(doc)


def load_kev(path: Path) -> KevCatalog:
    """The catalogue from a file (plain or gzip-compressed)."""
    with open_feed_file(path) as f:
        return read_kev(f)
