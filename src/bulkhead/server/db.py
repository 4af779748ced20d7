"""Database engine, sessions and Alembic migrations applied at start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from .errors import SettingsError

__all__ = ["Database", "migrate"]

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# PostgreSQL advisory lock key held while migrating ("bulkhead" in ASCII): several hosts that start at once migrate
# one after the other (the first upgrades, the others find the schema current) instead of racing on the same DDL.
MIGRATION_LOCK = 0x62756C6B68656164


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (on PostgreSQL under an advisory lock: one process at a time)."""
    try:
        if url.startswith("postgresql"):
            engine = create_engine(url, poolclass=NullPool)
            try:
                with engine.connect() as lock:
                    lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
                    try:
                        command.upgrade(_alembic_config(url), "head")
                    finally:
                        lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            finally:
                engine.dispose()
        else:
            command.upgrade(_alembic_config(url), "head")
    except OperationalError as exc:
        raise SettingsError(f"cannot reach the database at {_redact(url)}: {exc.orig}") from exc


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class Database:
    """Owns the engine and hands out sessions (one transaction each)."""

    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self.factory = sessionmaker(self.engine, expire_on_commit=False)
        self.autocommit = not url.startswith("sqlite")
        reads = self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.autocommit else self.engine
        self.reader = sessionmaker(reads, expire_on_commit=False)
        event.listen(self.reader, "before_flush", _no_writes)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.factory() as s, s.begin():
            yield s

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session that only reads, for a request answered from one statement or from a few that need not see
        one snapshot (a list page, a rollout's progress from its counters).

        On PostgreSQL its statements run outside a transaction (autocommit): no BEGIN and COMMIT round trips, each
        of which, on a busy server, also waits for the interpreter's lock to come back to its thread; a page read
        took half its time in them. SQLite: one transaction, as a session's. A flush in it is an error on both (a
        write here would bypass the change feed)."""
        if self.autocommit:
            with self.reader() as s:
                yield s
            return
        with self.reader() as s, s.begin():
            yield s

    def dispose(self) -> None:
        self.engine.dispose()


def _no_writes(session: Session, _ctx: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a read-only session (Database.read) was asked to write")


def _sqlite_pragmas(conn: Any, _record: Any) -> None:
    # The driver's own transaction handling starts a transaction only at the first write, so what a session read
    # before could be overwritten by a write it never saw (a lost update). Transactions are begun here instead.
    conn.isolation_level = None
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    """Every session is one serialized transaction: `BEGIN IMMEDIATE` takes SQLite's write lock at the start, so a
    read-modify-write (an action's history, a device's state) never loses a concurrent session's change; the other
    sessions wait for it (up to the connection's timeout). PostgreSQL gets the same from row locks where rows change."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")
