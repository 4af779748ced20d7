"""A real server over a socket, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEV_CA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    admin: str
    data_dir: Path
    backend: str

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def tenant(self, keyring: bool = True) -> str:
        """A fresh tenant (with the RAUC test CA as keyring); returns its admin token."""
        with self.client(self.admin) as c:
            r = c.post("/api/v1/tenants", json={"name": f"t-{uuid.uuid4().hex[:10]}"})
            r.raise_for_status()
            token: str = r.json()["token"]
            if keyring:
                c.put(
                    "/api/v1/keyring", json={"pem": Path(DEV_CA).read_text()}, headers={"authorization": f"Bearer {token}"}
                ).raise_for_status()
            return token


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
    env = {**os.environ, "BULKHEAD_ADMIN_TOKEN": "", "BULKHEAD_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024)}
    env.pop("BULKHEAD_DATABASE_URL", None)
    if request.param == "postgresql":
        env["BULKHEAD_DATABASE_URL"] = _pg_url()
    port = free_port()
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkhead.cli", "server", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {(data / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("server did not come up in 60 s")
    try:
        yield LiveServer(url, (data / "admin.token").read_text().strip(), data, request.param)
    finally:
        proc.terminate()
        proc.wait(20)
