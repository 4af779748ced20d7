"""The database layer: a session is one transaction that never loses a concurrent session's write; a read session
on PostgreSQL runs its statements outside a transaction and refuses to write."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import func, select

from bulkhead.server.db import Database, migrate
from bulkhead.server.models import Tenant
from tests.pg import pg_url


def test_sqlite_sessions_do_not_lose_a_concurrent_read_modify_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    db = Database(url)
    with db.session() as s:
        s.add(Tenant(name="t"))
    read_first = threading.Event()
    errors: list[BaseException] = []

    def slow_writer() -> None:
        try:
            with db.session() as s:
                t = s.scalar(select(Tenant))
                assert t is not None
                seen = t.name
                read_first.set()
                time.sleep(0.5)  # the other session tries to write meanwhile
                t.name = seen + "+slow"
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            read_first.set()

    th = threading.Thread(target=slow_writer)
    th.start()
    assert read_first.wait(5)
    with db.session() as s:  # waits for the slow session instead of reading what it is about to overwrite
        t = s.scalar(select(Tenant))
        assert t is not None
        t.name = t.name + "+fast"
    th.join(5)
    assert not errors, errors
    with db.session() as s:
        assert s.scalar(select(Tenant.name)) == "t+slow+fast"
    db.dispose()


def test_a_read_session_on_postgresql_opens_no_transaction_and_cannot_write() -> None:
    url = pg_url().replace("postgresql://", "postgresql+psycopg://")
    migrate(url)
    db = Database(url)
    try:
        with db.session() as s:
            s.add(Tenant(name="t"))
            s.flush()
            assert s.connection().connection.driver_connection.info.transaction_status == TransactionStatus.INTRANS
        with db.read() as s:
            assert s.scalar(select(Tenant.name)) == "t"
            # No BEGIN was sent, none is open: the statement ran (and ended) on its own.
            assert s.connection().connection.driver_connection.info.transaction_status == TransactionStatus.IDLE
        with pytest.raises(RuntimeError, match="read-only session"), db.read() as s:
            s.add(Tenant(name="written"))
            s.flush()
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(Tenant)) == 1
    finally:
        db.dispose()


def test_a_read_session_on_sqlite_cannot_write_either(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    db = Database(url)
    with pytest.raises(RuntimeError, match="read-only session"), db.read() as s:
        s.add(Tenant(name="written"))
        s.flush()
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Tenant)) == 0
    db.dispose()
