"""Counts a process shares between readers: kept per key while still valid, one count for all who wait meanwhile.

A count over a whole fleet (a rollout's 100,000 actions, the devices per group) takes tens to hundreds of
milliseconds; dashboards and scripts read the same ones over and over. A count is kept per key until its `ttl`
runs out, its caller's `stamp` (the state of the row it belongs to, as the caller read it) differs, `still_valid`
(if given) says something it depends on changed since it was made, or this process `forget`s it; concurrent
readers of a key that finds no valid count wait for one count instead of running their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

__all__ = ["SharedCounts"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedCounts(Generic[K, V]):
    def __init__(
        self,
        count: Callable[[Session, K], V],
        ttl: float,
        still_valid: Callable[[K, float], bool] | None = None,
        kept: int = 10_000,
        stale_while_counting: bool = False,
    ) -> None:
        """`still_valid(key, counted_at)`: whether nothing the count depends on changed since `counted_at`
        (time.monotonic); `kept`: how many keys' counts a process keeps at most (expired ones are dropped first);
        `stale_while_counting`: while one reader counts anew, the others get the count it replaces (if younger than
        `ttl` and not forgotten here) instead of waiting: for counts that change with every device change (a burst
        of 100,000 would have every reader wait for one recount after another), not for exact ones."""
        self.count, self.ttl, self.still_valid, self.kept = count, ttl, still_valid, kept
        self.stale_while_counting = stale_while_counting
        self._counts: dict[K, tuple[float, float, Hashable, V]] = {}  # key -> (counted at, until, stamp, value)
        self._locks: dict[K, threading.Lock] = {}
        self._forgot: dict[K, float] = {}  # key -> when this process last forgot its count
        self._guard = threading.Lock()

    def read(self, s: Session, key: K, stamp: Hashable = None, fresh: bool = False) -> V:
        """The key's count: a kept one if still valid for the same `stamp` (unless `fresh`), else counted now,
        once for every reader waiting meanwhile."""
        arrived = time.monotonic()
        if not fresh and (hit := self._valid(key, stamp, arrived)) is not None:
            return hit
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        if not lock.acquire(blocking=not (self.stale_while_counting and not fresh)):
            got = self._counts.get(key)
            if got is not None and got[2] == stamp and got[1] > arrived:
                return got[3]  # another reader is counting anew: the count it replaces
            lock.acquire()
        try:
            # The reader waited for a count: one still valid, or one begun after it arrived, which saw everything
            # it asks about even if something changed again since (which only a later reader must see).
            got = self._counts.get(key)
            if not fresh and got is not None and got[2] == stamp and got[0] >= arrived:
                return got[3]
            if not fresh and (hit := self._valid(key, stamp, time.monotonic())) is not None:
                return hit
            started = time.monotonic()
            value = self.count(s, key)
            self._keep(key, (started, started + self.ttl, stamp, value))
            return value
        finally:
            lock.release()

    def forget(self, key: K) -> None:
        """This process changed what the key's count depends on: the next read counts again (and a count begun
        before now is not kept)."""
        with self._guard:
            self._counts.pop(key, None)
            self._forgot[key] = time.monotonic()

    def _valid(self, key: K, stamp: Hashable, now: float) -> V | None:
        hit = self._counts.get(key)
        if hit is None or hit[1] <= now or hit[2] != stamp:
            return None
        if self.still_valid is not None and not self.still_valid(key, hit[0]):
            return None
        return hit[3]

    def _keep(self, key: K, entry: tuple[float, float, Hashable, V]) -> None:
        with self._guard:
            # A key read has a lock, and a count unless forgotten since: both are bounded, expired ones go first.
            if self._forgot.get(key, -1.0) >= entry[0]:
                return  # forgotten while it was counted: it may miss that change
            if max(len(self._counts), len(self._locks), len(self._forgot)) >= self.kept:
                now = time.monotonic()
                held = self._counts.keys() | self._locks.keys() | self._forgot.keys()
                stale = [k for k in held if k not in self._counts or self._counts[k][1] <= now]
                for k in stale or list(held)[: self.kept // 2]:
                    self._counts.pop(k, None)
                    self._locks.pop(k, None)
                    self._forgot.pop(k, None)
            self._counts[key] = entry
