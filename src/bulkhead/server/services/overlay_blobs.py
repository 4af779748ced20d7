"""The overlay's index files in the artifact store: which may go once a suite is published again.

A suite keeps two generations of index files (its current one and the previous one, for a device that read the old
InRelease just before the new one was published); the generation before that is dropped at each publication, and
its files are removed from the store unless another suite (of any tenant: the store is content-addressed, and an
index with the same packages is the same file) or a package still names them. Publishing and this check run under
one lock (`lock_publishing`): otherwise a publication that found a file already stored, but has not committed yet,
could lose it to another suite's cleanup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Text, cast, or_, select, text
from sqlalchemy.orm import Session

from ..overlay_models import OverlayPackage, OverlaySuite

__all__ = ["PUBLISH_LOCK", "dropped", "lock_publishing", "unreferenced"]

# PostgreSQL advisory lock key held by every publication until its transaction ends ("overlay!" in ASCII). SQLite
# needs none: every session there is a serialized BEGIN IMMEDIATE transaction (db.py).
PUBLISH_LOCK = 0x6F7665726C617921
# An empty file has one digest whatever made it; another artifact could be empty too, so it is never removed here.
_EMPTY = hashlib.sha256(b"").hexdigest()


def lock_publishing(s: Session) -> None:
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PUBLISH_LOCK})


def dropped(old_previous: dict[str, Any], *kept: dict[str, Any]) -> set[str]:
    """Digests of the generation a publication drops that neither kept generation has."""
    keep = {f["sha256"] for files in kept for f in files.values()}
    return {f["sha256"] for f in old_previous.values()} - keep - {_EMPTY}


def unreferenced(s: Session, digests: Iterable[str]) -> list[str]:
    """The digests no suite's index generations (the caller's changes flushed) and no package name."""
    out = []
    for sha in sorted(digests):
        pattern = f"%{sha}%"
        named = s.scalar(
            select(OverlaySuite.id)
            .where(or_(cast(OverlaySuite.files, Text).like(pattern), cast(OverlaySuite.previous_files, Text).like(pattern)))
            .limit(1)
        )
        if named is None and s.scalar(select(OverlayPackage.id).where(OverlayPackage.sha256 == sha).limit(1)) is None:
            out.append(sha)
    return out
