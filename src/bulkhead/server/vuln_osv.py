"""The `osv` feed: OSV records (app ecosystems: PyPI, npm, Go, crates.io, Maven, …) imported from a file, indexed by
(ecosystem, package name) for matching the package URLs of app SBOMs.

Import only, for now: a JSON array of OSV records, one record, an object whose `records` is such an array (plain or
gzip), or a zip of `.json` records as osv.dev publishes per ecosystem (`gs://osv-vulnerabilities/PyPI/all.zip`).
A fetched OSV feed can give its records to :func:`osv_index` and be returned by `FeedStore.osv_index`.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from bulkhead.cra.errors import VulnRecordError
from bulkhead.cra.feed_errors import FeedFormatError
from bulkhead.cra.feedfile import open_feed_file
from bulkhead.cra.feeds import FeedSource
from bulkhead.cra.match_osv import ECOSYSTEM_PURL_TYPE
from bulkhead.cra.model import Component
from bulkhead.cra.osv import OsvRecord, parse_osv

__all__ = ["OSV", "OsvIndex", "load_osv", "osv_candidates", "osv_index"]

OsvIndex = dict[tuple[str, str], list[OsvRecord]]

_MAX_UNPACKED = 4 << 30  # a zip's records, unpacked (osv.dev's whole PyPI zip is a few hundred MB)
_PURL_ECOSYSTEMS: dict[str, list[str]] = {}
for _eco, _ptype in ECOSYSTEM_PURL_TYPE.items():
    _PURL_ECOSYSTEMS.setdefault(_ptype, []).append(_eco)


def _items(doc: Any) -> list[Any]:
    if isinstance(doc, Mapping) and isinstance(doc.get("records"), list):
        return list(doc["records"])
    return list(doc) if isinstance(doc, list) else [doc]


def _parse(items: Iterable[tuple[str, Any]]) -> list[OsvRecord]:
    out = []
    for where, item in items:
        try:
            out.append(parse_osv(item))
        except VulnRecordError as e:
            raise FeedFormatError(f"not an OSV file: {where}: {e}") from None
    return out


def load_osv(path: Path) -> list[OsvRecord]:
    """The OSV records of an `osv` feed file; FeedFormatError naming the problem otherwise."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if i.filename.endswith(".json") and not i.is_dir()]
            if sum(i.file_size for i in infos) > _MAX_UNPACKED:
                raise FeedFormatError(f"the zip unpacks to more than {_MAX_UNPACKED >> 30} GiB of records")
            docs: list[tuple[str, Any]] = []
            for i in infos:
                try:
                    docs.extend((f"{i.filename}", d) for d in _items(json.loads(z.read(i))))
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise FeedFormatError(f"not an OSV file: {i.filename} is not JSON ({e})") from None
            if not docs:
                raise FeedFormatError("not an OSV file: the zip holds no .json records")
            return _parse(docs)
    with open_feed_file(path) as f:
        try:
            doc = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FeedFormatError(f"not an OSV file: not JSON ({e})") from None
    return _parse((f"item {i}", d) for i, d in enumerate(_items(doc)))


def _name(ecosystem: str, name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower() if ecosystem == "PyPI" else name


def osv_index(records: Iterable[OsvRecord]) -> OsvIndex:
    """Records by (ecosystem without its release suffix, package name); a record naming several packages is under
    each. Withdrawn records are left out."""
    index: OsvIndex = {}
    for r in records:
        if r.withdrawn is not None:
            continue
        keys = {(a.ecosystem.partition(":")[0], _name(a.ecosystem.partition(":")[0], a.name)) for a in r.affected}
        for key in keys:
            index.setdefault(key, []).append(r)
    return index


def _purl_keys(purl: str) -> list[tuple[str, str]]:
    try:
        p = PackageURL.from_string(purl)
    except ValueError:
        return []
    ns = p.namespace or ""
    out = []
    for eco in _PURL_ECOSYSTEMS.get(p.type, []):
        if p.type == "golang":
            name = f"{ns}/{p.name}" if ns else p.name
        elif p.type == "maven":
            name = f"{ns}:{p.name}"
        elif p.type == "npm" and ns:
            name = f"{ns if ns.startswith('@') else '@' + ns}/{p.name}"
        else:
            name = p.name
        out.append((eco, _name(eco, name)))
    return out


def osv_candidates(components: Iterable[Component], index: OsvIndex) -> list[OsvRecord]:
    """The records that may concern the components (looked up by their package URLs), each once."""
    picked: dict[int, OsvRecord] = {}
    for c in components:
        for key in _purl_keys(c.purl) if c.purl else ():
            for r in index.get(key, ()):
                picked[id(r)] = r
    return list(picked.values())


OSV = FeedSource(
    name="osv",
    url="",  # import only: `bulkhead vuln import FILE --feed osv`
    filename="osv.json",  # JSON (or gzip), or a zip of records: recognised by its content
    count_records=lambda p: len(load_osv(p)),
    attribution="OSV data from osv.dev (https://osv.dev), under the licence of each record's source (CC-BY 4.0 for "
    "the GitHub Advisory Database and most others).",
)
