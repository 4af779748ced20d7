"""Periodic jobs once per cluster: the process that first claims a job's minute enqueues it; the others skip it.

Every server process runs a huey consumer whose scheduler enqueues the periodic jobs (the rollout sweep, notifications,
feed fetches and scans) when their minute comes. With several processes (granian workers, several hosts sharing the
database and a Redis queue) each would enqueue its own copy. A claim is a row keyed by (job, minute) in the shared
database: inserting it either succeeds (this process enqueues the job) or finds it there (another one did).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket

from sqlalchemy import String, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from .db import Database
from .models import Base, UTCDateTime, utcnow

__all__ = ["CLAIMS_KEPT", "JobClaim", "PeriodicClaims"]

log = logging.getLogger(__name__)

CLAIMS_KEPT = dt.timedelta(days=7)  # a claim older than this is pruned (one row per job and minute it ran)


class JobClaim(Base):
    """One periodic job's run for one minute, claimed by the process that enqueued it."""

    __tablename__ = "job_claims"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)  # the minute (UTC) the job was due
    host: Mapped[str] = mapped_column(String(128))  # host:pid of the claiming process, to see who ran what
    claimed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PeriodicClaims:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, name: str, due: dt.datetime) -> bool:
        """Whether this process is the one to run job `name` for the minute of `due` (naive datetimes are UTC)."""
        if due.tzinfo is None:
            due = due.replace(tzinfo=dt.UTC)
        slot = due.astimezone(dt.UTC).replace(second=0, microsecond=0)
        host = f"{socket.gethostname()}:{os.getpid()}"[:128]  # now: a forked worker is a process of its own
        try:
            with self.db.session() as s:
                upsert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
                stmt = upsert(JobClaim).values(name=name[:64], slot=slot, host=host, claimed_at=utcnow())
                # A row comes back only when this insert made it (an ORM insert's rowcount is not kept).
                won = (
                    s.execute(stmt.on_conflict_do_nothing(index_elements=["name", "slot"]).returning(JobClaim.name)).first()
                    is not None
                )
                if won and slot.minute == 0 and name == "rollouts.sweep":  # once an hour, somewhere in the cluster
                    s.execute(delete(JobClaim).where(JobClaim.slot < slot - CLAIMS_KEPT))
        except SQLAlchemyError as e:  # the database is away: the job would fail too; the next minute tries again
            log.warning("periodic job %s for %s not enqueued: its claim failed (%s)", name, slot.isoformat(), e)
            return False
        if not won:
            log.debug("periodic job %s for %s: another process runs it", name, slot.isoformat())
        return won
