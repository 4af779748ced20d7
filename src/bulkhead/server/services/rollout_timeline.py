"""A rollout's progress over time: how many devices had succeeded, failed or been canceled at each moment.

Counted by the database from each action's `closed_at` (migration 0027), in at most `MAX_BUCKETS` equal steps from
the rollout's start to now (or to its last close, once it is over): one grouped query over the rollout's actions,
no row read into Python. A device's newest attempt counts (a retried failure leaves the failed line when its new
attempt is made), as in the progress counts.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Float, Integer, and_, func, or_, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ...protocol.statuses import ActionStatus as A
from ..models import Action, Rollout
from .rollout_sql import is_pg

__all__ = ["MAX_BUCKETS", "SERIES", "Timeline", "build", "steps", "timeline"]

MAX_BUCKETS = 60
# The lines of the plot and the final statuses each one counts.
SERIES: dict[str, tuple[str, ...]] = {
    "succeeded": (A.SUCCESS,),
    "failed": (A.FAILURE, A.ROLLED_BACK),
    "canceled": (A.CANCELED,),
}
_LINE_OF = {status: line for line, statuses in SERIES.items() for status in statuses}


@dataclass(frozen=True)
class Timeline:
    start: dt.datetime
    step: float  # seconds per bucket
    ends: list[dt.datetime]  # the end of each bucket
    # Per line, devices in that final state at the end of each bucket (cumulative).
    series: dict[str, list[int]] = field(default_factory=dict)

    def points(self) -> list[dict[str, object]]:
        return [{"at": end.isoformat(), **{k: v[i] for k, v in self.series.items()}} for i, end in enumerate(self.ends)]


def steps(start: dt.datetime, end: dt.datetime, most: int = MAX_BUCKETS) -> tuple[float, int]:
    """Pure: (seconds per step, steps) covering start to end in at most `most` steps of at least a second."""
    span = max(1.0, (end - start).total_seconds())
    step = max(1.0, span / max(1, most))
    return step, max(1, min(most, math.ceil(span / step - 1e-9)))


def build(start: dt.datetime, step: float, buckets: int, rows: list[tuple[str, int, int]]) -> Timeline:
    """Pure: cumulative lines from (line, bucket index, devices closed in it) rows over `buckets` steps of `step`
    seconds from `start` (an index out of range counts in the nearest bucket)."""
    per = {line: [0] * buckets for line in SERIES}
    for line, index, n in rows:
        per[line][min(max(index, 0), buckets - 1)] += n
    series = {line: _cumulative(v) for line, v in per.items()}
    ends = [start + dt.timedelta(seconds=step * (i + 1)) for i in range(buckets)]
    return Timeline(start, step, ends, series)


def _cumulative(values: list[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


def _seconds_since(s: Session, column: Any, start: dt.datetime) -> ColumnElement[Any]:
    """Seconds from `start` to the column's time, computed by the database (UTC on both)."""
    if is_pg(s):
        return func.extract("epoch", column) - start.timestamp()
    # SQLite keeps the UTC wall-clock digits (models.UTCDateTime); julianday reads them, 2440587.5 is 1970-01-01.
    # A julianday is a double near 2.5 million (about 40 µs apart): rounded to the millisecond, a close on a step's
    # boundary falls in the step it begins, as on PostgreSQL.
    seconds = sql_cast((func.julianday(column) - 2440587.5) * 86400.0, Float) - start.timestamp()
    return func.round(seconds, 3)


def timeline(s: Session, r: Rollout, now: dt.datetime, buckets: int = MAX_BUCKETS) -> Timeline:
    """The rollout's lines from its start (its `start_at` when later than its creation) to now, or to its last
    close once it is finished or canceled."""
    start = max(r.created_at, r.start_at) if r.start_at else r.created_at
    closed = (
        Action.rollout_id == r.id,
        Action.superseded.is_(False),
        Action.closed_at.is_not(None),
        or_(Action.status.in_(list(_LINE_OF)), and_(Action.status == A.DOWNLOADED, Action.action_type == "download_only")),
    )
    end = now
    if r.status in ("finished", "canceled"):
        end = s.scalar(select(func.max(Action.closed_at)).where(*closed)) or r.updated_at
    step, buckets = steps(start, end, buckets)
    since = _seconds_since(s, Action.closed_at, start)
    # Whole steps since the start (floor on PostgreSQL; on SQLite a cast truncates, the same for times after it).
    index = sql_cast(func.floor(since / step), Integer) if is_pg(s) else sql_cast(since / step, Integer)
    q = select(Action.status, index.label("i"), func.count()).where(*closed).group_by(Action.status, "i")
    rows = [(_LINE_OF.get(status, "succeeded"), int(i or 0), int(n)) for status, i, n in s.execute(q)]
    return build(start, step, buckets, rows)
