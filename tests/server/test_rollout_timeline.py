"""A rollout's progress over time (services/rollout_timeline.py): the steps are counted by the database from each
action's close time, on SQLite and PostgreSQL (the `db` fixture), and match what the pure core makes of the same
times; devices that report close at once; a canceled rollout's plot ends at its last close."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from bulkhead.server.db import Database
from bulkhead.server.models import Action, Rollout
from bulkhead.server.services.rollout_timeline import build, steps, timeline
from bulkhead.server.services.rollouts import RolloutService

from .test_rollout_counts import _report
from .test_rollout_scale import _fleet, _who

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def test_steps_cover_the_span_in_at_most_the_given_number_of_whole_seconds() -> None:
    assert steps(T0, T0 + dt.timedelta(seconds=10)) == (1.0, 10), "short: one second each"
    assert steps(T0, T0) == (1.0, 1), "no span: one step"
    step, n = steps(T0, T0 + dt.timedelta(hours=2))
    assert n == 60 and step == 120.0
    step, n = steps(T0, T0 + dt.timedelta(seconds=7201))
    assert n == 60 and step * n >= 7201


def test_build_counts_cumulatively_and_keeps_out_of_range_indexes_at_the_ends() -> None:
    t = build(T0, 10.0, 4, [("succeeded", 0, 2), ("succeeded", 2, 3), ("failed", 1, 1), ("canceled", 9, 1), ("failed", -1, 1)])
    assert t.series == {"succeeded": [2, 2, 5, 5], "failed": [1, 2, 2, 2], "canceled": [0, 0, 0, 1]}
    assert t.ends == [T0 + dt.timedelta(seconds=10 * i) for i in (1, 2, 3, 4)]
    assert t.points()[-1] == {"at": t.ends[-1].isoformat(), "succeeded": 5, "failed": 2, "canceled": 1}


def _close(db: Database, rid: int, times: dict[int, tuple[str, dt.datetime]]) -> None:
    """Give the rollout's actions (by position in id order) a final status and a close time."""
    with db.session() as s:
        ids = list(s.scalars(select(Action.id).where(Action.rollout_id == rid).order_by(Action.id)))
        for pos, (status, at) in times.items():
            s.execute(update(Action).where(Action.id == ids[pos]).values(status=status, active=False, closed_at=at))
        s.execute(update(Rollout).where(Rollout.id == rid).values(created_at=T0, status="finished"))


def test_the_database_puts_each_close_in_its_step_as_the_pure_core_would(db: Database) -> None:
    tid, rel = _fleet(db, 6)
    svc, who = RolloutService(db), _who(tid)
    rid = svc.create(who, {"name": "r", "release_id": rel, "target": {}, "phases": [{"percent": 100}]})["id"]
    second = dt.timedelta(seconds=1)
    _close(
        db,
        rid,
        {
            0: ("success", T0 + 0.5 * second),  # step 0
            1: ("success", T0 + 59.999 * second),  # the last moment of step 0 (a step is 60 s: 1 h in 60 steps)
            2: ("failure", T0 + 60 * second),  # step 1
            3: ("rolled_back", T0 + 30 * 60 * second),
            4: ("success", T0 + 3600 * second),  # the rollout's last close: the plot's end
        },
    )
    with db.session() as s:
        r = s.get(Rollout, rid)
        assert r is not None
        t = timeline(s, r, now=T0 + dt.timedelta(days=3))  # finished: the end is its last close, not now
    assert t.start == T0 and t.step == 60.0 and len(t.ends) == 60 and t.ends[-1] == T0 + 3600 * second
    assert t.series["succeeded"][0] == 2 and t.series["succeeded"][58] == 2 and t.series["succeeded"][59] == 3
    assert t.series["failed"][0] == 0 and t.series["failed"][1] == 1 and t.series["failed"][30] == 2
    assert t.series["failed"][29] == 1 and t.series["canceled"][-1] == 0
    assert all(a <= b for a, b in zip(t.series["succeeded"], t.series["succeeded"][1:], strict=False))


def test_reported_closes_count_at_once_and_a_cancel_closes_the_rest(db: Database) -> None:
    tid, rel = _fleet(db, 4)
    svc, who = RolloutService(db), _who(tid)
    rid = svc.create(who, {"name": "r", "release_id": rel, "target": {}, "phases": [{"percent": 100, "error_threshold": 100}]})[
        "id"
    ]
    assert svc.timeline(who, "r").series["succeeded"][-1] == 0
    _report(db, svc, rid, rel, "success")
    _report(db, svc, rid, rel, "failure")
    _report(db, svc, rid, rel, "downloading")  # open: on no line
    t = svc.timeline(who, "r")
    assert (t.series["succeeded"][-1], t.series["failed"][-1], t.series["canceled"][-1]) == (1, 1, 0)
    svc.cancel(who, "r")  # the device that never started closes now; the downloading one must confirm
    with db.session() as s:
        closes = s.execute(select(Action.status, Action.closed_at).where(Action.rollout_id == rid)).all()
    assert sorted(st for st, at in closes if at is not None) == ["canceled", "failure", "success"]
    t = svc.timeline(who, "r")
    assert (t.series["succeeded"][-1], t.series["failed"][-1], t.series["canceled"][-1]) == (1, 1, 1)
    last_close = max(at for _, at in closes if at is not None)
    assert t.ends[-1] >= last_close and t.ends[-1] - last_close < dt.timedelta(seconds=2), "ends at the last close"
