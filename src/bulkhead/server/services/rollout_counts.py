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

from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Action
from .shared_counts import SharedCounts

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


class ProgressCounts(SharedCounts[int, list[Group]]):
    """Rollouts' counts (`count`), shared for `ttl` seconds and while the rollout row's state (`stamp`) holds."""

    def __init__(self, ttl: float = TTL) -> None:
        super().__init__(count, ttl, kept=_KEPT)
