"""Rollout progress reads share a count (services/rollout_counts.py): within a second, readers of a rollout run one
GROUP BY; a change this process makes, or a change to the rollout's row made by another process, is counted at
once; answers to commands are always counted afresh. On SQLite and PostgreSQL (the `db` fixture)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select

from bulkhead.server.db import Database
from bulkhead.server.models import Action, Device
from bulkhead.server.services.rollout_counts import ProgressCounts
from bulkhead.server.services.rollouts import RolloutService

from .test_rollout_scale import Statements, _fleet, _who

BODY: dict[str, Any] = {"name": "c", "target": {}, "phases": [{"percent": 50, "error_threshold": 100}, {"percent": 50}]}


def _counts(sql: list[str]) -> int:
    return sum("GROUP BY actions.phase" in q for q in sql)


def _report(db: Database, svc: RolloutService, rid: int, rel: int, status: str) -> None:
    """One device of the open phase reports `status`, as the report path does (on_change after the commit)."""
    with db.session() as s:
        device_id = s.scalar(
            select(Action.device_id).where(Action.rollout_id == rid, Action.phase == 0, Action.status == "scheduled").limit(1)
        )
        dev = s.get(Device, device_id)
        assert dev is not None
        assert svc.on_agent_event(s, dev, status, rel, None) == rid
    svc.on_change(rid)


def test_reads_within_a_second_share_one_count_and_changes_here_are_counted_at_once(db: Database) -> None:
    tid, rel = _fleet(db, 10)
    svc, who, stmts = RolloutService(db), _who(tid), Statements(db)
    rid = svc.create(who, {**BODY, "release_id": rel})["id"]
    created, sql = stmts.during(lambda: svc.create(who, {**BODY, "name": "d", "release_id": rel}))
    assert _counts(sql) == 1, "the creation's answer is counted"
    first, sql = stmts.during(lambda: svc.show(who, "d"))
    assert _counts(sql) == 0 and first["counts"] == created["counts"] == {"scheduled": 5}, "a read shares it"
    first, sql = stmts.during(lambda: svc.show(who, "c"))
    again, sql = stmts.during(lambda: svc.show(who, "c"))
    assert _counts(sql) == 0 and again == first, "a second read shares the first one's count"
    _report(db, svc, rid, rel, "downloading")
    after, sql = stmts.during(lambda: svc.show(who, "c"))
    assert _counts(sql) == 1 and after["counts"] == {"scheduled": 4, "downloading": 1}, "a change here is counted at once"
    paused, sql = stmts.during(lambda: svc.pause(who, "c"))
    assert _counts(sql) == 1 and paused["counts"] == after["counts"], "a command's answer is counted afresh"


def test_a_change_to_the_rollout_row_made_elsewhere_is_counted_at_once(db: Database) -> None:
    """Another process (here another service on the same database) finishes the rollout: a reader that counted a
    moment ago must not show it finished with the counts of before."""
    tid, rel = _fleet(db, 4)
    here, there, who = RolloutService(db), RolloutService(db), _who(tid)
    rid = here.create(who, {**BODY, "release_id": rel, "phases": [{"percent": 100}]})["id"]
    assert here.show(who, "c")["counts"] == {"scheduled": 4}
    for _ in range(4):
        _report(db, there, rid, rel, "success")
    there.advance(rid)
    shown = here.show(who, "c")
    assert shown["status"] == "finished" and shown["counts"] == {"success": 4}


def test_concurrent_readers_of_a_rollout_run_one_count(db: Database) -> None:
    tid, rel = _fleet(db, 10)
    svc, who, stmts = RolloutService(db), _who(tid), Statements(db)
    rid = svc.create(who, {**BODY, "release_id": rel})["id"]
    svc.progress.forget(rid)  # the creation's count is not shared: the readers must count
    start = threading.Barrier(8)
    seen: list[dict[str, Any]] = []

    def read() -> None:
        start.wait()
        seen.append(svc.show(who, "c"))

    def all_at_once() -> None:
        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    _, sql = stmts.during(all_at_once)
    assert len(seen) == 8 and all(s["counts"] == {"scheduled": 5} for s in seen)
    assert _counts(sql) == 1, f"{_counts(sql)} counts for 8 readers"


def test_counts_kept_are_bounded() -> None:
    counts = ProgressCounts()
    for rid in range(20_050):
        counts._keep(rid, (0.0, 0.0, None, []))  # expired entries go first
    assert len(counts._counts) <= 10_000
