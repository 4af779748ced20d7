"""A rollout's actions counted per phase, status and latest attempt, with the bytes they moved; reads share counts.

The count is one GROUP BY over the progress index (ix_actions_rollout_progress): tens of milliseconds at 100,000
actions. Dashboards, the web UI (every 2 s) and CI scripts poll the same rollouts, so a process keeps each rollout's
count for one second and concurrent readers of a rollout wait for one count instead of running their own
(`ProgressCounts.read`). A change this process makes to the rollout (a report, an evaluation, an operator's
command) drops its count at once; a change made by another process shows within a second, and at once when it
changed the rollout's row (its status or phase: the caller's `stamp`), so a rollout read as finished is never
shown with the counts of before. Answers to operator commands are counted afresh (`fresh`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Action

__all__ = ["Group", "ProgressCounts", "count"]

TTL = 1.0  # seconds a count is shared
_KEPT = 10_000  # rollouts whose count a process keeps at most (older ones are dropped first)


class Group(NamedTuple):
    phase: int
    status: str
    superseded: bool
    n: int
    bytes: int


def count(s: Session, rollout_id: int) -> list[Group]:
    """The rollout's actions per (phase, status, superseded), with the bytes each group moved."""
    q = (
        select(Action.phase, Action.status, Action.superseded, func.count(), func.coalesce(func.sum(Action.bytes_done), 0))
        .where(Action.rollout_id == rollout_id)
        .group_by(Action.phase, Action.status, Action.superseded)
    )
    return [Group(int(p), str(st), bool(sup), int(n), int(b or 0)) for p, st, sup, n, b in s.execute(q)]


class ProgressCounts:
    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._counts: dict[int, tuple[float, Hashable, list[Group]]] = {}  # rollout id -> (until, stamp, groups)
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def read(self, s: Session, rollout_id: int, stamp: Hashable = None, fresh: bool = False) -> list[Group]:
        """The rollout's count: shared if counted within the last second for the same `stamp` (the rollout row's
        state as the caller read it) unless `fresh`, else counted now, once for every reader waiting meanwhile."""
        if not fresh:
            hit = self._counts.get(rollout_id)
            if hit is not None and hit[0] > time.monotonic() and hit[1] == stamp:
                return hit[2]
        with self._guard:
            lock = self._locks.setdefault(rollout_id, threading.Lock())
        with lock:
            started = time.monotonic()
            hit = self._counts.get(rollout_id)
            if not fresh and hit is not None and hit[0] > started and hit[1] == stamp:  # the reader waited for counted
                return hit[2]
            groups = count(s, rollout_id)
            self._keep(rollout_id, (started + self.ttl, stamp, groups))
            return groups

    def forget(self, rollout_id: int) -> None:
        """This process changed the rollout: the next read counts again."""
        self._counts.pop(rollout_id, None)

    def _keep(self, rollout_id: int, entry: tuple[float, Hashable, list[Group]]) -> None:
        with self._guard:
            # A rollout read has a lock, and a count unless forgotten since: both are bounded, expired ones go first.
            if max(len(self._counts), len(self._locks)) >= _KEPT:
                now = time.monotonic()
                kept = self._counts.keys() | self._locks.keys()
                stale = [rid for rid in kept if rid not in self._counts or self._counts[rid][0] <= now]
                for rid in stale or list(kept)[: _KEPT // 2]:
                    self._counts.pop(rid, None)
                    self._locks.pop(rid, None)
            self._counts[rollout_id] = entry
