"""Rollouts at fleet scale, measured honestly without a clock: the statements a rollout's create, evaluation,
progress read and cancel run do not grow in number with its devices (set-based SQL), finished rollouts are not
evaluated by the sweep, the database's counts are right, and its target selection is `rollout_plan.matches`.

In-process on the real services and a real database, once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from bulkhead.server.db import Database, migrate
from bulkhead.server.errors import NotFound
from bulkhead.server.jobs import Jobs
from bulkhead.server.models import Action, Device, Release, Rollout, Tenant
from bulkhead.server.services.actions import open_action
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.ddi import DdiService
from bulkhead.server.services.ddi_auth import DdiCaller
from bulkhead.server.services.rollout_plan import allocate_new, matches, parse_phases
from bulkhead.server.services.rollout_sql import matching_devices
from bulkhead.server.services.rollouts import RolloutService
from bulkhead.server.settings import Settings


class Statements:
    """Counts the statements sent to the database (executemany counts once per call)."""

    def __init__(self, db: Database) -> None:
        self.sql: list[str] = []
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sql.append(statement)

    def during(self, fn: Any) -> tuple[Any, list[str]]:
        self.sql.clear()
        out = fn()
        return out, list(self.sql)


def _fleet(db: Database, n: int, name: str = "t") -> tuple[int, int]:
    with db.session() as s:
        t = Tenant(name=name)
        s.add(t)
        s.flush()
        rel = Release(tenant_id=t.id, compatible="board", version="2.0", format="plain", sha256="0" * 64, size=1, info={})
        s.add(rel)
        s.flush()
        rows = [
            {
                "tenant_id": t.id,
                "name": f"d{i}",
                "compatible": "board",
                "status": "active",
                "tags": ["blue"] if i % 2 else [],
                "groups": ["canary"] if i < 2 else ["line"],
                "attributes": {},
                "desired": {},
                "update_status": {},
                "os_version": "1.0",
            }
            for i in range(n)
        ]
        s.execute(insert(Device), rows)
        return t.id, rel.id


def _who(tid: int) -> Principal:
    return Principal("user", "op", tid, "t", "admin")


def _report_all(db: Database, svc: RolloutService, phase: int, rollout_id: int, status: str = "success") -> None:
    """Every device of an open phase reports, as the reports service does (one device transaction each)."""
    with db.session() as s:
        devices = list(
            s.scalars(select(Action.device_id).where(Action.rollout_id == rollout_id, Action.phase == phase, Action.active))
        )
    for device_id in devices:
        with db.session() as s:
            dev = s.get(Device, device_id)
            assert dev is not None
            rel_id = s.scalar(select(Rollout.release_id).where(Rollout.id == rollout_id))
            assert svc.on_agent_event(s, dev, status, rel_id, None) == rollout_id


def _steps(db: Database, n: int) -> dict[str, int]:
    """How many statements each step of a two-phase rollout over `n` devices takes."""
    tid, rel = _fleet(db, n, name=f"t{n}")
    svc, count, who = RolloutService(db), Statements(db), _who(tid)
    body = {
        "name": "r",
        "release_id": rel,
        "target": {"groups": ["canary", "line"]},
        "phases": [{"percent": 10}, {"percent": 90}],
    }
    ro, create = count.during(lambda: svc.create(who, body))
    assert [p["devices"] for p in ro["phases"]] == [max(1, n // 10), 0]
    _, idle = count.during(lambda: svc.advance(None))
    _, reported = count.during(lambda: svc.advance(ro["id"]))
    _report_all(db, svc, 0, ro["id"])
    _, opening = count.during(lambda: svc.advance(ro["id"]))
    shown, show = count.during(lambda: svc.show(who, "r"))
    assert [p["devices"] for p in shown["phases"]] == [max(1, n // 10), n - max(1, n // 10)]
    assert shown["current_phase"] == 1 and shown["counts"] == {"success": max(1, n // 10), "scheduled": n - max(1, n // 10)}
    assert not any("history" in sql for sql in show), "the progress read loads no action row"
    _, cancel = count.during(lambda: svc.cancel(who, "r"))
    return {
        "create": len(create),
        "idle": len(idle),
        "reported": len(reported),
        "opening": len(opening),
        "show": len(show),
        "cancel": len(cancel),
    }


def test_statements_of_create_evaluation_progress_and_cancel_do_not_grow_with_the_devices(db: Database) -> None:
    small, large = _steps(db, 10), _steps(db, 120)
    assert small == large, (small, large)


def test_a_phase_opens_without_writing_its_devices_and_they_are_offered_then(db: Database) -> None:
    tid, rel = _fleet(db, 30)
    svc, count = RolloutService(db), Statements(db)
    body = {"name": "p", "release_id": rel, "target": {}, "phases": [{"group": "canary"}, {"percent": 100}]}
    ro = svc.create(_who(tid), body)
    with db.session() as s:
        line = s.scalar(select(Device.id).where(Device.name == "d20"))
        assert line is not None
        assert open_action(s, line) is None, "its action exists but its phase is not open"
    _report_all(db, svc, 0, ro["id"])
    _, sql = count.during(lambda: svc.advance(ro["id"]))
    assert not any(s.lstrip().upper().startswith(("INSERT INTO ACTIONS", "UPDATE ACTIONS")) for s in sql), sql
    with db.session() as s:
        offered = open_action(s, line)
        assert offered is not None and offered.phase == 1 and offered.status == "scheduled"


def test_finished_and_canceled_rollouts_are_not_evaluated_by_the_sweep(db: Database) -> None:
    tid, rel = _fleet(db, 6)
    svc, count, who = RolloutService(db), Statements(db), _who(tid)
    done = svc.create(who, {"name": "done", "release_id": rel, "target": {"groups": ["canary"]}})
    _report_all(db, svc, 0, done["id"])
    svc.advance(done["id"])
    assert svc.show(who, "done")["status"] == "finished"
    svc.create(who, {"name": "gone", "release_id": rel, "target": {"groups": ["line"]}})
    assert svc.cancel(who, "gone")["status"] == "canceled"
    _, sql = count.during(lambda: svc.advance(None))
    assert not any("actions" in s or "devices" in s for s in sql), sql  # one look at the rollouts table, no more

    # A device that joins a finished rollout's target is taken in when devices change, not by the sweep.
    with db.session() as s:
        s.execute(update(Device).where(Device.name == "d5").values(groups=["canary"]))
    svc.advance(None)
    assert svc.show(who, "done")["devices"] == 2 and svc.show(who, "done")["status"] == "finished"
    svc.advance(None, joiners=True)
    shown = svc.show(who, "done")
    assert shown["status"] == "running" and shown["devices"] == 3 and shown["counts"] == {"success": 2, "scheduled": 1}


def test_progress_counts_follow_reports_retries_and_cancel(db: Database) -> None:
    tid, rel = _fleet(db, 10)
    svc, who = RolloutService(db), _who(tid)
    ro = svc.create(
        who,
        {"name": "c", "release_id": rel, "target": {"groups": ["line"]}, "phases": [{"error_threshold": 100, "percent": 100}]},
    )
    with db.session() as s:
        ids = list(s.scalars(select(Action.device_id).where(Action.rollout_id == ro["id"]).order_by(Action.device_id)))
    outcomes = ["success"] * 5 + ["failure", "rolled_back"]
    for device_id, status in zip(ids, outcomes, strict=False):
        with db.session() as s:
            dev = s.get(Device, device_id)
            assert dev is not None
            svc.on_agent_event(s, dev, "downloading", rel, None)
            svc.on_agent_event(s, dev, status, rel, "it went so")
    svc.advance(ro["id"])
    shown = svc.show(who, "c")
    assert shown["counts"] == {"success": 5, "failure": 1, "rolled_back": 1, "scheduled": 1}
    assert shown["phases"][0]["devices"] == 8 and shown["devices"] == 8
    retried = svc.retry(who, "c")
    assert retried["retried"] == 2
    assert retried["counts"] == {"success": 5, "scheduled": 3}, "a retried device counts once, by its new attempt"
    with db.session() as s:
        downloading = ids[5]
        dev = s.get(Device, downloading)
        assert dev is not None
        svc.on_agent_event(s, dev, "downloading", rel, None)
    canceled = svc.cancel(who, "c")
    assert canceled["counts"] == {"success": 5, "canceling": 1, "canceled": 2}
    with db.session() as s:
        a = s.scalar(select(Action).where(Action.device_id == downloading, Action.superseded.is_(False)))
        assert a is not None and a.status_before_cancel == "downloading" and a.active
        assert a.history[-1]["status"] == "canceling" and a.history[-1]["message"].startswith("rollout canceled")
        assert [h["status"] for h in a.history] == ["scheduled", "downloading", "canceling"]


TARGETS: list[dict[str, Any]] = [
    {},
    {"compatible": "board"},
    {"compatible": "other"},
    {"tags": ["blue"]},
    {"tags": ["blue", "red"]},
    {"groups": ["a", "b"]},
    {"groups": ["b"], "tags": ["red"]},
    {"attributes": {"site": "x"}},
    {"attributes": {"site": "x", "hw": "2"}},
]


def test_the_database_selects_the_devices_rollout_plan_matches(db: Database) -> None:
    with db.session() as s:
        t = Tenant(name="m")
        s.add(t)
        s.flush()
        shapes = [
            ("board", [], [], {}),
            ("board", ["blue"], ["a"], {"site": "x"}),
            ("board", ["blue", "red"], ["b"], {"site": "x", "hw": "2"}),
            ("other", ["red"], ["a", "b"], {"site": "y"}),
            ("board", ["red"], ["c"], {"hw": "2"}),
        ]
        for i, (compatible, tags, groups, attrs) in enumerate(shapes):
            s.add(
                Device(
                    tenant_id=t.id,
                    name=f"m{i}",
                    compatible=compatible,
                    status="active",
                    tags=tags,
                    groups=groups,
                    attributes=attrs,
                )
            )
        s.flush()
        devices = list(s.scalars(select(Device).where(Device.tenant_id == t.id)))
        for raw in TARGETS:
            target = {"tags": [], "groups": [], "compatible": None, "attributes": {}, **raw}
            got = set(s.scalars(matching_devices(s, t.id, target, False)))
            want = {d.id for d in devices if matches(target, d.compatible, d.tags, d.groups, d.attributes)}
            assert got == want, raw


def test_evaluations_asked_for_within_a_second_share_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    db = Database(url)
    jobs = Jobs(Settings(data_dir=tmp_path), RolloutService(db))
    for _ in range(50):
        jobs.advance(7)  # fifty devices reported within a moment
    queued = jobs.huey.pending()
    assert [task.args for task in queued] == [(7, False), (7, False)]
    assert queued[0].eta is None, "the first one runs at once"
    assert queued[1].eta is not None, "the other 49 share one at the end of the window"
    jobs.advance(8)
    assert [task.args for task in jobs.huey.pending()][-1] == (8, False), "another rollout has its own window"
    jobs.advance(7, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    jobs.advance(None)
    assert len(jobs.huey.pending()) == 5, "a scheduled start is never folded into a window"
    assert jobs.huey.pending()[-1].args == (None, True), "a device change looks for joiners, finished rollouts too"
    db.dispose()


def test_a_device_that_left_the_target_before_its_phase_opened_is_not_offered_it(db: Database) -> None:
    tid, rel = _fleet(db, 6)
    svc, who = RolloutService(db), _who(tid)
    ro = svc.create(
        who,
        {
            "name": "l",
            "release_id": rel,
            "target": {"groups": ["canary", "line"]},
            "phases": [{"group": "canary"}, {"group": "line"}],
        },
    )
    with db.session() as s:
        s.execute(update(Device).where(Device.name == "d5").values(groups=["elsewhere"]))
        left = s.scalar(select(Device.id).where(Device.name == "d5"))
        stayed = s.scalar(select(Device.id).where(Device.name == "d4"))
        assert left is not None and stayed is not None
    _report_all(db, svc, 0, ro["id"])
    svc.advance(ro["id"])
    shown = svc.show(who, "l")
    assert shown["current_phase"] == 1 and [p["devices"] for p in shown["phases"]] == [2, 3]
    with db.session() as s:
        assert open_action(s, left) is None and open_action(s, stayed) is not None


def test_a_scheduled_rollout_takes_in_devices_that_joined_before_its_start(db: Database) -> None:
    tid, rel = _fleet(db, 4)
    svc, who = RolloutService(db), _who(tid)
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    ro = svc.create(who, {"name": "s", "release_id": rel, "target": {"groups": ["canary"]}, "start_at": start.isoformat()})
    assert ro["status"] == "scheduled" and ro["devices"] == 0
    with db.session() as s:
        s.execute(update(Device).where(Device.name == "d3").values(groups=["canary"]))
    svc.advance(ro["id"], now=start + dt.timedelta(seconds=1))  # the job queued for its start
    shown = svc.show(who, "s")
    assert shown["status"] == "running" and shown["devices"] == 3 and shown["counts"] == {"scheduled": 3}


def test_a_ddi_device_cannot_fetch_or_report_on_an_action_of_a_phase_not_open(db: Database) -> None:
    tid, rel = _fleet(db, 30)
    svc = RolloutService(db)
    ddi = DdiService(db, svc, poll_interval=60)
    body = {"name": "p", "release_id": rel, "target": {}, "phases": [{"group": "canary"}, {"percent": 100}]}
    ro = svc.create(_who(tid), body)
    with db.session() as s:
        line = s.scalar(select(Device.id).where(Device.name == "d20"))
        waiting = s.scalar(select(Action.id).where(Action.device_id == line, Action.rollout_id == ro["id"]))
        assert line is not None and waiting is not None
    caller = DdiCaller(tenant_id=tid, device_id=line, name="d20", compatible="board")
    with pytest.raises(NotFound):
        ddi.deployment(caller, waiting, "http://x")
    _report_all(db, svc, 0, ro["id"])
    svc.advance(ro["id"])
    assert ddi.deployment(caller, waiting, "http://x")["id"] == str(waiting), "offered once its phase is open"


@pytest.mark.parametrize(
    "phases",
    [
        [{"name": "canary", "percent": 10}, {"name": "rest", "percent": 90}],
        [{"name": "a", "percent": 7}, {"name": "b", "percent": 1}, {"name": "c", "percent": 50}],
        [{"name": "all", "percent": 100}],
    ],
)
def test_the_first_placement_puts_each_device_where_allocate_new_would(db: Database, phases: list[dict[str, Any]]) -> None:
    """On PostgreSQL a new rollout without group phases is placed by one INSERT ... SELECT that ranks the devices by
    the same sha256 bucket in SQL; on SQLite by `allocate_new` in Python. Both give every device the phase
    `allocate_new` gives it, and each device exactly one action."""
    tid, rel = _fleet(db, 333)
    svc = RolloutService(db)
    out = svc.create(_who(tid), {"name": "r", "release_id": rel, "phases": phases, "allow_empty": True})
    with db.session() as s:
        placed = {d: p for d, p in s.execute(select(Action.device_id, Action.phase).where(Action.rollout_id == out["id"]))}
        ids = list(s.scalars(select(Device.id).where(Device.tenant_id == tid).order_by(Device.id)))
        assert s.scalar(select(func.count()).select_from(Action).where(Action.rollout_id == out["id"])) == len(ids)
        histories = {a.phase: a.history[0]["message"] for a in s.scalars(select(Action).where(Action.rollout_id == out["id"]))}
    parsed = parse_phases(phases)
    assert placed == allocate_new(parsed, out["id"], dict.fromkeys(ids, ()), {})
    assert histories == {p: f"phase {p + 1} ('{parsed[p]['name']}')" for p in histories}


def test_action_references_hold_without_foreign_keys_on_postgresql(db: Database) -> None:
    """PostgreSQL checks an action's device and rollout once per statement (migration 0026) where SQLite keeps its
    foreign keys: on both, an action of a missing device or rollout is refused, and deleting a device or a rollout
    deletes its actions."""
    tid, rel = _fleet(db, 4)
    svc = RolloutService(db)
    first = svc.create(_who(tid), {"name": "one", "release_id": rel})
    second = svc.create(_who(tid), {"name": "two", "release_id": rel, "allow_downgrade": True})
    row = {"tenant_id": tid, "release_id": rel, "phase": 0, "action_type": "soft", "status": "scheduled", "history": []}
    with db.session() as s:
        device_ids = list(s.scalars(select(Device.id).where(Device.tenant_id == tid).order_by(Device.id)))
    for bad in ({"rollout_id": first["id"], "device_id": 10**9}, {"rollout_id": 10**9, "device_id": device_ids[0]}):
        with pytest.raises(IntegrityError), db.session() as s:
            s.execute(insert(Action), [{**row, **bad}])
    with db.session() as s:
        s.execute(delete(Device).where(Device.id == device_ids[0]))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Action).where(Action.device_id == device_ids[0])) == 0
        assert s.scalar(select(func.count()).select_from(Action).where(Action.rollout_id == second["id"])) == 3
        s.execute(delete(Rollout).where(Rollout.id == second["id"]))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Action).where(Action.rollout_id == second["id"])) == 0
        assert s.scalar(select(func.count()).select_from(Action).where(Action.rollout_id == first["id"])) == 3


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # two concurrent writers: SQLite has one at a time
def test_a_device_deleted_while_its_action_is_inserted_leaves_no_orphan(db: Database) -> None:
    """The race a foreign key's row lock closes, closed on PostgreSQL by the advisory lock of migration 0026: a device
    deleted while another transaction inserts its action (checked, not yet committed) waits for that commit and
    then deletes the action too (SQLite keeps its foreign keys, and its single writer orders the two)."""
    tid, rel = _fleet(db, 2)
    out = RolloutService(db).create(_who(tid), {"name": "r", "release_id": rel})
    with db.session() as s:
        victim = s.scalars(select(Device.id).where(Device.tenant_id == tid).order_by(Device.id)).first()
    row = {"tenant_id": tid, "release_id": rel, "rollout_id": out["id"], "device_id": victim, "phase": 0}
    row |= {"action_type": "soft", "status": "scheduled", "history": []}
    inserter = db.engine.connect()
    tx = inserter.begin()
    inserter.execute(insert(Action), [row])  # its check passed: the advisory lock is held (shared) until commit
    deleted = threading.Event()

    def delete_device() -> None:
        with db.session() as s:
            s.execute(delete(Device).where(Device.id == victim))
        deleted.set()

    t = threading.Thread(target=delete_device)
    t.start()
    assert not deleted.wait(1.0), "the delete must wait for the insert's transaction"
    tx.commit()
    inserter.close()
    t.join(30)
    assert deleted.is_set()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Action).where(Action.device_id == victim)) == 0
