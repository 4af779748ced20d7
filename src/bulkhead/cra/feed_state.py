"""The state of one feed, persisted as JSON next to its data (``<name>.state.json``).

It says when the feed was last tried and last known current, how old the data is, how many records it holds,
where it came from, and why the last attempt failed. It also keeps the HTTP validators of the held copy (for a
conditional GET) and of an unfinished download (for a resumed one).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["FeedState", "PartialDownload", "load_state", "save_state", "state_path"]


@dataclass
class PartialDownload:
    """An unfinished download in ``<file>.part``: resumable with Range while the server's validator matches."""

    url: str
    validator: str | None  # the strong ETag, else Last-Modified, for If-Range
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class FeedState:
    name: str
    url: str | None = None
    last_attempt: dt.datetime | None = None
    last_success: dt.datetime | None = None  # when the held data was last confirmed current (stored, or 304)
    last_changed: dt.datetime | None = None  # when the held data last changed
    records: int | None = None
    size: int | None = None
    sha256: str | None = None  # of the held file
    origin: str | None = None  # "http" or "import <file name>"
    etag: str | None = None
    last_modified: str | None = None
    last_error: str | None = None
    partial: PartialDownload | None = field(default=None)
    detail: dict[str, Any] = field(
        default_factory=dict
    )  # what a multi-file feed holds (CVE list: as of, deltas; OSV: ecosystems)

    @property
    def has_data(self) -> bool:
        return self.last_changed is not None

    @property
    def ok(self) -> bool:
        return self.has_data and self.last_error is None

    def age(self, now: dt.datetime) -> dt.timedelta | None:
        """How long ago the held data was last known current."""
        return None if self.last_success is None else now - self.last_success

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, dt.datetime):
                out[k] = v.isoformat()
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FeedState:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in doc.items() if k in known}
        for k in ("last_attempt", "last_success", "last_changed"):
            if kw.get(k):
                kw[k] = dt.datetime.fromisoformat(kw[k])
        if kw.get("partial"):
            kw["partial"] = PartialDownload(**kw["partial"])
        return cls(**kw)


def state_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.state.json"


def load_state(directory: Path, name: str) -> FeedState:
    """The saved state, or a fresh one when there is none (an unreadable file counts as none: it is rewritten)."""
    path = state_path(directory, name)
    try:
        return FeedState.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return FeedState(name=name)


def save_state(directory: Path, state: FeedState) -> None:
    """Write the state atomically (a temporary file renamed over the old one)."""
    path = state_path(directory, state.name)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{state.name}.state.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state.to_json(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
