"""A real server over a socket, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.live import LiveServer, free_port, live_server

__all__ = ["LiveServer", "free_port"]


def _pg_url() -> str:
    url = os.environ.get("BULKHEAD_TEST_PG_URL", "postgresql://bulkhead:bulkhead@127.0.0.1:5432/bulkhead_test")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            name = f"bh_{uuid.uuid4().hex[:12]}"
            conn.execute(f"CREATE DATABASE {name}")
    except Exception as exc:
        pytest.skip(f"PostgreSQL is not reachable at {url} ({exc}); run 'make pg' (scripts/start-postgres.sh as root)")
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp(f"server-{request.param}")
    env = {"BULKHEAD_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024), "BULKHEAD_DDI_CERT_HEADER": "X-Client-Cn"}
    if request.param == "postgresql":
        env["BULKHEAD_DATABASE_URL"] = _pg_url()
    with live_server(data, env) as srv:
        yield srv
