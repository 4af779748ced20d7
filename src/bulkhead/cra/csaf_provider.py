"""A CSAF 2.0 provider's files (section 7), pure: provider-metadata.json, the directory's index.txt and changes.csv,
and the RFC 9116 security.txt that points to them.

`base` is where the provider's `/.well-known/` lives (https://advisories.example.com, or a server URL with a tenant
path segment). Published documents sit at ``{base}/.well-known/csaf/white/{year}/{file}`` where year is that of
their initial release date and file the name CSAF 5.1 gives them (bulkhead.cra.csaf.filename).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Published",
    "changes_csv",
    "directory_path",
    "directory_url",
    "index_txt",
    "metadata_url",
    "provider_metadata",
    "security_txt",
]


@dataclass(frozen=True)
class Published:
    """One published document: its CSAF file name, initial and current release dates."""

    file: str
    initial_release_date: dt.datetime
    current_release_date: dt.datetime

    @property
    def path(self) -> str:
        return directory_path(self.file, self.initial_release_date)


def _z(t: dt.datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def directory_path(file: str, initial_release_date: dt.datetime) -> str:
    """The path of a document inside the directory: `<year>/<file>` (requirement 11: one folder per year)."""
    return f"{initial_release_date.astimezone(dt.UTC).year}/{file}"


def metadata_url(base: str) -> str:
    return f"{base}/.well-known/csaf/provider-metadata.json"


def directory_url(base: str) -> str:
    return f"{base}/.well-known/csaf/white/"


def provider_metadata(
    base: str,
    publisher: dict[str, Any],
    last_updated: dt.datetime,
    keys: Iterable[tuple[str, str]],
    signed: bool,
) -> dict[str, Any]:
    """provider-metadata.json: the directory distribution, the OpenPGP keys as (fingerprint, url), the publisher.
    A provider that signs and hashes every document is a csaf_trusted_provider (requirements 18-20)."""
    doc: dict[str, Any] = {
        "canonical_url": metadata_url(base),
        "distributions": [{"directory_url": directory_url(base)}],
        "last_updated": _z(last_updated),
        "list_on_CSAF_aggregators": True,
        "metadata_version": "2.0",
        "mirror_on_CSAF_aggregators": True,
        "publisher": publisher,
        "role": "csaf_trusted_provider" if signed else "csaf_provider",
    }
    pgp = [{"fingerprint": fpr, "url": url} for fpr, url in sorted(keys)]
    if pgp:
        doc["public_openpgp_keys"] = pgp
    return doc


def index_txt(docs: Iterable[Published]) -> str:
    """index.txt (requirement 13): every document's path in the directory, one a line, sorted."""
    return "".join(f"{p}\n" for p in sorted(d.path for d in docs))


def changes_csv(docs: Iterable[Published]) -> str:
    """changes.csv (requirement 14): "path","current release date" a line, the most recently changed first."""
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for d in sorted(docs, key=lambda d: (d.current_release_date, d.path), reverse=True):
        w.writerow([d.path, _z(d.current_release_date)])
    return buf.getvalue()


def security_txt(
    base: str,
    contacts: Iterable[str],
    expires: dt.datetime,
    policy: str | None,
    languages: Iterable[str] = ("en",),
) -> str:
    """/.well-known/security.txt (RFC 9116): Contact, Expires, Policy, CSAF (CSAF 2.0 requirement 8), Canonical,
    Preferred-Languages; CRLF or LF both allowed, LF here."""
    lines = [f"Contact: {c}" for c in contacts]
    lines.append(f"Expires: {_z(expires.replace(microsecond=0))}")
    if policy:
        lines.append(f"Policy: {policy}")
    lines.append(f"CSAF: {metadata_url(base)}")
    lines.append(f"Canonical: {base}/.well-known/security.txt")
    lines.append(f"Preferred-Languages: {', '.join(languages)}")
    return "\n".join(lines) + "\n"
