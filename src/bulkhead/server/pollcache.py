"""Poll answers kept in memory per device, valid until the change feed marks what they depend on."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .changes import ChangeFeed

__all__ = ["ACTION_TTL", "IDLE_TTL", "Answer", "PollCache"]

IDLE_TTL = 3600.0  # nothing to do: the answer changes only with a change the feed reports
ACTION_TTL = 30.0  # an open action: its install gate may open or close with the clock


@dataclass(frozen=True)
class Answer:
    """A complete poll answer: body, its ETag, and how long it may be reused without a change."""

    raw: bytes
    etag: str
    content_type: str
    ttl: float


@dataclass(frozen=True)
class _Entry:
    answer: Answer
    tenant_id: int | None
    since: float
    expires: float


class PollCache:
    def __init__(self, feed: ChangeFeed, max_entries: int) -> None:
        self.feed, self.max_entries = feed, max_entries
        self._entries: dict[tuple[str, int, str], _Entry] = {}
        self.hits = self.misses = 0

    def get(self, key: tuple[str, int, str]) -> Answer | None:
        e = self._entries.get(key)
        if e is None or e.expires < time.monotonic() or not self.feed.valid(e.tenant_id, key[1], e.since):
            self.misses += 1
            return None
        self.hits += 1
        return e.answer

    def put(self, key: tuple[str, int, str], tenant_id: int | None, since: float, answer: Answer) -> None:
        """Keep `answer`, computed from data read after `since` (a monotonic time taken before the read)."""
        if answer.ttl <= 0 or self.max_entries <= 0:
            return
        if len(self._entries) >= self.max_entries:
            for old in list(self._entries)[: self.max_entries // 4]:  # the oldest quarter (dicts keep insertion order)
                del self._entries[old]
        self._entries.pop(key, None)
        self._entries[key] = _Entry(answer, tenant_id, since, since + answer.ttl)
