"""The OSV feed: OSV.dev's bulk export of each configured app ecosystem, and an index of it by package.

OSV.dev publishes one zip per ecosystem, ``<base>/<ecosystem>/all.zip`` (one ``<id>.json`` OSV record per member);
the feed's ``parts`` are the ecosystems kept (default :data:`DEFAULT_ECOSYSTEMS`, set with
``BULKHEAD_OSV_ECOSYSTEMS``). Each zip is fetched on its own with :func:`bulkhead.cra.feeds.fetch` into
``osv/`` next to the other feeds (conditional GET, ``.part`` + Range resume, parse check before install: every
member parsed with :func:`bulkhead.cra.osv.parse_osv`, unpacked with bounds so a zip bomb is refused; a record the
parser rejects is left out and not counted, an export without one readable record is refused), and kept as
published. The feed's own state sums them up: records over all ecosystems, a sha256 over theirs (so a cache keyed
by it sees any change), ``detail.ecosystems`` per ecosystem (records, last success, error). One ecosystem failing
keeps its last good zip and is named in ``last_error``; the others are still updated.

:func:`load_osv_index` reads the held zips into an :class:`OsvIndex`: records by (ecosystem, package name), the way
a scan looks a component up from its package URL. Air-gapped sites import an ecosystem's ``all.zip`` by hand: the
ecosystem is the one its records name (it must be one of the configured ones).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import json
import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from .archive import ArchiveLimits, iter_members
from .errors import VulnRecordError
from .feed_errors import FeedError, FeedFormatError
from .feed_state import FeedState, load_state, save_state
from .feedfile import open_feed_file
from .feeds import FeedSource, fetch, import_file, locked, make_client
from .osv import OsvRecord, parse_osv

__all__ = [
    "DEFAULT_ECOSYSTEMS",
    "OsvIndex",
    "import_osv",
    "iter_osv_zip",
    "load_osv_index",
    "osv_key",
    "parse_ecosystems",
    "sync_osv",
    "with_ecosystems",
]

DEFAULT_ECOSYSTEMS = ("PyPI", "npm", "Go", "crates.io", "Maven")
LIMITS = ArchiveLimits()


def parse_ecosystems(value: str | None) -> tuple[str, ...]:
    """``"PyPI, npm,Go"`` → ("PyPI", "npm", "Go"); empty → the defaults."""
    items = tuple(dict.fromkeys(e.strip() for e in (value or "").split(",") if e.strip()))
    return items or DEFAULT_ECOSYSTEMS


def _safe(ecosystem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", ecosystem)


def osv_key(ecosystem: str, name: str) -> tuple[str, str]:
    """The index key: the ecosystem as OSV spells it, and the package name (PyPI's normalised: lower case, runs of
    ``-_.`` as one ``-``, as PEP 503 and the OSV matcher compare them; every other ecosystem's as written)."""
    if ecosystem == "PyPI":
        return ecosystem, re.sub(r"[-_.]+", "-", name).lower()
    return ecosystem, name


@dataclass
class OsvIndex:
    """OSV records by (ecosystem, package name) (see :func:`osv_key`); withdrawn records are left out.

    A record that names several packages (a GitHub advisory for a package published in two ecosystems) is under
    each of them. ``get("PyPI", "Django")`` and ``get("PyPI", "django")`` are the same list."""

    by_package: dict[tuple[str, str], list[OsvRecord]] = field(default_factory=dict)
    records: int = 0  # distinct records indexed

    def get(self, ecosystem: str, name: str) -> list[OsvRecord]:
        return self.by_package.get(osv_key(ecosystem, name), [])

    def __len__(self) -> int:
        return self.records


def iter_osv_zip(path: Path, skipped: list[str] | None = None) -> Iterator[OsvRecord]:
    """The records of an ecosystem's ``all.zip`` (bounded unpacking). A member that is not JSON raises
    FeedFormatError (the archive is broken); a record the parser rejects (one without a package, which OSV allows
    for GIT-only ranges) is left out, its member name added to ``skipped``."""
    for name, data in iter_members(path, ".json", LIMITS, label=path.name):
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise FeedFormatError(f"{path.name}: member {name} is not JSON ({e})") from None
        try:
            yield parse_osv(doc)
        except VulnRecordError:
            if skipped is not None:
                skipped.append(name)


def _count(path: Path) -> int:
    skipped: list[str] = []
    n = sum(1 for _ in iter_osv_zip(path, skipped))
    if n == 0:
        why = f" ({len(skipped)} members are not OSV records the parser reads, such as {skipped[0]})" if skipped else ""
        raise FeedFormatError(f"{path.name} holds no OSV records{why}")
    return n


def _part(source: FeedSource, ecosystem: str) -> FeedSource:
    return FeedSource(
        name=f"osv-{_safe(ecosystem)}",
        url=f"{source.url.rstrip('/')}/{quote(ecosystem)}/all.zip",
        filename=f"{_safe(ecosystem)}.zip",
        count_records=_count,
        attribution=source.attribution,
        interval=source.interval,
    )


def _dir(directory: Path, source: FeedSource) -> Path:
    return directory / source.name


def _summarise(source: FeedSource, directory: Path, state: FeedState, now: dt.datetime) -> None:
    """The feed's state from its ecosystems' states."""
    parts = _dir(directory, source)
    eco: dict[str, dict[str, object]] = {}
    errors, digest, records, changed = [], hashlib.sha256(), 0, []
    all_ok = True
    for e in source.parts:
        st = load_state(parts, _part(source, e).name)
        eco[e] = {
            "records": st.records,
            "last_success": st.last_success.isoformat() if st.last_success else None,
            "last_error": st.last_error,
        }
        if st.last_error:
            errors.append(f"{e}: {st.last_error}")
        if not st.has_data or st.last_error:
            all_ok = False
        if st.has_data:
            digest.update(f"{e}\0{st.sha256}\n".encode())
            records += st.records or 0
            if st.last_changed:
                changed.append(st.last_changed)
    state.detail = {"ecosystems": eco}
    state.records = records if changed else None
    state.sha256 = digest.hexdigest() if changed else None
    state.last_changed = max(changed) if changed else None
    state.last_error = "; ".join(errors) or None
    if all_ok and changed:
        state.last_success = now
    elif not errors and not changed:
        state.last_error = "no ecosystem held yet"


def sync_osv(
    source: FeedSource, directory: Path, client: httpx.Client | None = None, now: dt.datetime | None = None
) -> FeedState:
    """Fetch every configured ecosystem's export (each conditional and resumable); never raises for feed trouble."""
    directory.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.UTC)
    http = client or make_client()
    try:
        for e in source.parts:
            fetch(_part(source, e), _dir(directory, source), http, now)
        with locked(directory, source.name):
            state = load_state(directory, source.name)
            state.last_attempt, state.url, state.origin = now, source.url, "http"
            _summarise(source, directory, state, now)
            save_state(directory, state)
            return state
    finally:
        if client is None:
            http.close()


def _ecosystem_of(path: Path, known: tuple[str, ...]) -> str:
    seen: collections.Counter[str] = collections.Counter()
    for rec in iter_osv_zip(path):
        for a in rec.affected:
            seen[a.ecosystem.split(":", 1)[0]] += 1
        if sum(seen.values()) >= 50:
            break
    for eco, _ in seen.most_common():
        if eco in known:
            return eco
    named = ", ".join(e for e, _ in seen.most_common(3)) or "none"
    raise FeedError(
        f"{path.name}: its records are of ecosystem {named}, not one of the configured {', '.join(known)} "
        "(add it to BULKHEAD_OSV_ECOSYSTEMS)"
    )


def _records_of_json(path: Path) -> list[tuple[str, dict[str, object]]]:
    """(ecosystem, record) of a plain or gzip JSON file holding OSV records: an array, one record, or an object whose
    ``records`` is an array. Each record is checked with the parser; FeedFormatError names the first bad one."""
    try:
        with open_feed_file(path) as f:
            doc = json.load(f)
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as e:
        raise FeedFormatError(f"{path.name} is not an OSV export zip, and not JSON OSV records ({e})") from None
    if isinstance(doc, dict) and isinstance(doc.get("records"), list):
        items: list[object] = list(doc["records"])
    else:
        items = list(doc) if isinstance(doc, list) else [doc]
    out: list[tuple[str, dict[str, object]]] = []
    for i, item in enumerate(items):
        try:
            rec = parse_osv(item)
        except VulnRecordError as e:
            raise FeedFormatError(f"{path.name}: record {i} is not an OSV record ({e})") from None
        if not rec.affected or not isinstance(item, dict):
            raise FeedFormatError(f"{path.name}: record {i} ({rec.id}) names no affected package")
        out.append((rec.affected[0].ecosystem.split(":", 1)[0], item))
    if not out:
        raise FeedFormatError(f"{path.name} holds no OSV records")
    return out


def _zips_of_json(path: Path, known: tuple[str, ...], workdir: Path) -> list[tuple[str, Path]]:
    """JSON OSV records written as one export zip per ecosystem (as OSV.dev publishes them)."""
    groups: dict[str, list[dict[str, object]]] = {}
    for eco, item in _records_of_json(path):
        if eco not in known:
            raise FeedError(
                f"{path.name}: a record is of ecosystem {eco}, not one of the configured {', '.join(known)} "
                "(add it to BULKHEAD_OSV_ECOSYSTEMS)"
            )
        groups.setdefault(eco, []).append(item)
    out = []
    for eco, items in groups.items():
        zpath = workdir / f"{_safe(eco)}.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for n, item in enumerate(items):
                z.writestr(f"{_safe(str(item.get('id') or n))}.json", json.dumps(item))
        out.append((eco, zpath))
    return out


def import_osv(
    source: FeedSource, directory: Path, path: Path, expected_sha256: str | None = None, now: dt.datetime | None = None
) -> FeedState:
    """Brought in by hand: one ecosystem's ``all.zip``, or a JSON file of OSV records (an array, one record, or
    ``{"records": [...]}``, plain or gzip) which may span several configured ecosystems; every ecosystem it holds
    replaces that ecosystem's copy. Raises FeedError when refused (all held copies are kept)."""
    now = now or dt.datetime.now(dt.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".osv-import.") as tmp:
        try:
            if zipfile.is_zipfile(path):
                zips = [(_ecosystem_of(path, source.parts), path)]
            else:
                zips = _zips_of_json(path, source.parts, Path(tmp))
                expected_sha256 = None  # the checksum was of the JSON file, checked by the caller's import path
        except FeedFormatError as e:
            raise FeedError(f"import of {path.name} refused: {e}; the last good copy is kept") from None
        for _, z in zips:  # every part checked before any replaces its held copy
            try:
                _count(z)
            except FeedFormatError as e:
                raise FeedError(f"import of {path.name} refused: {e}; the last good copy is kept") from None
        for eco, z in zips:
            import_file(_part(source, eco), _dir(directory, source), z, expected_sha256, now)
    with locked(directory, source.name):
        state = load_state(directory, source.name)
        ecos = ", ".join(e for e, _ in zips)
        state.last_attempt, state.origin = now, f"import {path.name} ({ecos})"
        _summarise(source, directory, state, now)
        if state.last_error is None:
            state.last_success = now
        save_state(directory, state)
        return state


def load_osv_index(directory: Path, ecosystems: tuple[str, ...], feed: str = "osv") -> OsvIndex:
    """Index the held zip of each ecosystem (those never fetched are skipped)."""
    index = OsvIndex()
    parts = directory / feed
    seen: set[str] = set()
    for e in ecosystems:
        path = parts / f"{_safe(e)}.zip"
        if not path.exists():
            continue
        for rec in iter_osv_zip(path):
            if rec.withdrawn is not None or rec.id in seen:  # a GHSA published in two ecosystems is in both zips
                continue
            seen.add(rec.id)
            index.records += 1
            for k in {osv_key(a.ecosystem, a.name) for a in rec.affected}:
                index.by_package.setdefault(k, []).append(rec)
    return index


def with_ecosystems(source: FeedSource, ecosystems: tuple[str, ...]) -> FeedSource:
    return dataclasses.replace(source, parts=ecosystems)
