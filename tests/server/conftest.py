"""A real server over a socket, once on SQLite and once on PostgreSQL.

The SQLite run uses uvicorn and the PostgreSQL run granian (the default), so every API test runs on both HTTP
servers the CLI offers; the end-to-end tests run the default, granian on SQLite. The tests of a module that sets
`ALL_STORES = True` run a third time with the artifacts in S3 (a real SeaweedFS, started once per session), on
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkhead.server.db import Database, migrate
from tests.live import LiveServer, free_port, live_server
from tests.pg import pg_url
from tests.seaweed import S3Server, seaweedfs

__all__ = ["LiveServer", "free_port", "pg_url"]

SERVERS_ALL_STORES = ["sqlite-uvicorn", "postgresql-granian", "postgresql-granian-s3"]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test of a module with `ALL_STORES = True` that takes `server` runs on the S3 store too (a parametrize mark
    added before pytest's own hooks run: the mark takes precedence over the fixture's params)."""
    if "server" in metafunc.fixturenames and getattr(metafunc.module, "ALL_STORES", False):
        metafunc.definition.add_marker(pytest.mark.parametrize("server", SERVERS_ALL_STORES, indirect=True, scope="session"))


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS), once per session."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as srv:
        yield srv


@pytest.fixture(scope="session", params=["sqlite-uvicorn", "postgresql-granian"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    database, http_server, *store = request.param.split("-")
    data = tmp_path_factory.mktemp(f"server-{database}{'-s3' if store else ''}")
    env = {"BULKHEAD_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024), "BULKHEAD_DDI_CERT_HEADER": "X-Client-Cn"}
    if database == "postgresql":
        env["BULKHEAD_DATABASE_URL"] = pg_url()
    s3_info = None
    if store == ["s3"]:
        s3: S3Server = request.getfixturevalue("s3")
        bucket = s3.bucket()
        env.update(s3.env(bucket, "artifacts"))
        s3_info = (s3, bucket, "artifacts/")
    with live_server(data, env, http_server=http_server) as srv:
        srv.s3 = s3_info
        yield srv


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of each kind (SQLite in tmp_path; a fresh PostgreSQL database), for service-level tests."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = "postgresql+psycopg://" + pg_url().removeprefix("postgresql://")
    migrate(url)
    database = Database(url)
    yield database
    database.dispose()
