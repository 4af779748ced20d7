"""Fresh PostgreSQL databases for tests, dropped when the test session (each xdist worker's) ends."""

from __future__ import annotations

import os
import uuid

import pytest

__all__ = ["drop_created", "pg_url"]

_BASE = os.environ.get("BULKHEAD_TEST_PG_URL", "postgresql://bulkhead:bulkhead@127.0.0.1:5432/bulkhead_test")
_created: list[str] = []


def pg_url() -> str:
    """A fresh PostgreSQL database's URL (the test skips, naming what is missing, without a server)."""
    try:
        import psycopg

        with psycopg.connect(_BASE, connect_timeout=3, autocommit=True) as conn:
            name = f"bh_{uuid.uuid4().hex[:12]}"
            conn.execute(f"CREATE DATABASE {name}")
    except Exception as exc:
        pytest.skip(f"PostgreSQL is not reachable at {_BASE} ({exc}); run 'make pg' (scripts/start-postgres.sh as root)")
    _created.append(name)
    return _BASE.rsplit("/", 1)[0] + "/" + name


def drop_created() -> list[str]:
    """Drop the databases this process made (servers still connected are cut off); the names that could not be."""
    if not _created:
        return []
    import psycopg

    left: list[str] = []
    try:
        with psycopg.connect(_BASE, connect_timeout=3, autocommit=True) as conn:
            while _created:
                name = _created.pop()
                try:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                except psycopg.Error:
                    left.append(name)
    except psycopg.Error:  # the server went away: nothing to drop them on
        left += _created
        _created.clear()
    return left
