"""How a scan's findings are stored: the finding columns, bulk inserts (COPY on PostgreSQL), and the per-id digests
and stale ids a release or profile keeps so that a full run rewrites only the rows of ids whose findings changed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from ..vuln_models import VulnFinding

__all__ = [
    "FINDING_COLUMNS",
    "add_stale",
    "copy_in",
    "dump_digests",
    "id_digests",
    "load_digests",
    "load_stale",
    "store_findings",
]

FINDING_COLUMNS = [c.name for c in VulnFinding.__table__.columns if c.name != "id"]


def copy_in(s: Session, model: Any, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Insert rows: with COPY on PostgreSQL (a full scan writes hundreds of thousands), else executemany."""
    if not rows:
        return
    if s.get_bind().dialect.name != "postgresql":
        s.execute(insert(model), rows)
        return
    raw = s.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {model.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


CONTENT_COLUMNS = [c for c in FINDING_COLUMNS if c not in ("tenant_id", "release_id", "profile_id", "run_id")]


def id_digests(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per vulnerability id, what its rows say (not which run wrote them)."""
    by_id: dict[str, list[tuple[str, ...]]] = {}
    for r in rows:
        by_id.setdefault(r["cve"], []).append(tuple(str(r[c]) for c in CONTENT_COLUMNS))
    return {cve: hashlib.blake2b(repr(sorted(v)).encode(), digest_size=8).hexdigest() for cve, v in by_id.items()}


def load_digests(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def dump_digests(digests: dict[str, str]) -> str:
    return json.dumps(digests, separators=(",", ":"), sort_keys=True)


def load_stale(text: str | None) -> set[str]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        value = []
    return {str(v) for v in value} if isinstance(value, list) else set()


def add_stale(text: str | None, ids: set[str]) -> str:
    """The ids an incremental run rewrote, added to those rewritten since the last full write."""
    return json.dumps(sorted(load_stale(text) | ids), separators=(",", ":"))


def store_findings(s: Session, rows: list[dict[str, Any]]) -> None:
    copy_in(s, VulnFinding, FINDING_COLUMNS, rows)
