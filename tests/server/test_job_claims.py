"""Periodic jobs once per cluster: of several processes' schedulers, one enqueues each job's minute."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from huey.consumer import Scheduler
from sqlalchemy import select

from bulkhead.server.db import Database
from bulkhead.server.job_claims import CLAIMS_KEPT, JobClaim, PeriodicClaims
from bulkhead.server.jobs import Jobs
from bulkhead.server.services.rollouts import RolloutService
from bulkhead.server.settings import Settings

T0 = dt.datetime(2026, 12, 3, 9, 59, 12, tzinfo=dt.UTC)


def test_a_jobs_minute_is_claimed_by_exactly_one_of_racing_processes(db: Database) -> None:
    start = threading.Barrier(8)
    won: list[bool] = []

    def one(second: int) -> None:
        claims = PeriodicClaims(db)  # a process of its own: the database is all they share
        start.wait()
        won.append(claims.claim("rollouts.sweep", T0.replace(second=second)))

    threads = [threading.Thread(target=one, args=(i * 7,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True], "any second of one minute is that minute's one claim"
    claims = PeriodicClaims(db)
    assert claims.claim("notify.run", T0), "another job's minute is its own"
    assert claims.claim("rollouts.sweep", T0 + dt.timedelta(minutes=1)), "the next minute is a new claim"
    assert not claims.claim("rollouts.sweep", (T0 + dt.timedelta(seconds=40)).replace(tzinfo=None)), "naive is UTC"
    with db.session() as s:
        rows = s.scalars(select(JobClaim).where(JobClaim.name == "rollouts.sweep").order_by(JobClaim.slot)).all()
        assert [r.slot for r in rows] == [T0.replace(second=0), T0.replace(second=0) + dt.timedelta(minutes=1)]
        assert all(":" in r.host for r in rows)


def test_claims_older_than_a_week_are_pruned_by_the_hourly_sweep(db: Database) -> None:
    claims = PeriodicClaims(db)
    old = T0 - CLAIMS_KEPT - dt.timedelta(hours=1)
    assert claims.claim("vulns.daily", old) and claims.claim("vulns.daily", T0)
    assert claims.claim("rollouts.sweep", T0.replace(minute=0) + dt.timedelta(hours=1))  # the hour's first sweep
    with db.session() as s:
        assert [r.slot for r in s.scalars(select(JobClaim).where(JobClaim.name == "vulns.daily"))] == [T0.replace(second=0)]


def test_two_servers_schedulers_enqueue_each_due_periodic_job_once(db: Database, tmp_path: Path) -> None:
    """Two server processes with their own queues (two hosts) over one database: the minute the sweep and the
    notifications are due, the schedulers' periodic check runs on both, and one copy of each job is enqueued."""
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(Jobs(Settings(data_dir=tmp_path / name), RolloutService(db), claims=PeriodicClaims(db)))
    minute = dt.datetime(2026, 12, 3, 10, 0, 30)  # huey's schedulers read naive UTC
    for jobs in servers:
        Scheduler(jobs.huey, threading.Event(), 1, True).enqueue_periodic_tasks(minute)
    names = [t.name for jobs in servers for t in jobs.huey.pending()]
    assert sorted(names) == ["rollouts.sweep"], names
    # without claims (a process on its own) every scheduler enqueues its copy, as before
    (tmp_path / "c").mkdir()
    alone = Jobs(Settings(data_dir=tmp_path / "c"), RolloutService(db))
    Scheduler(alone.huey, threading.Event(), 1, True).enqueue_periodic_tasks(minute)
    assert [t.name for t in alone.huey.pending()] == ["rollouts.sweep"]
