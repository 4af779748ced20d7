"""A real Bulkhead server in a subprocess, over a socket (shared by the server and end-to-end tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    proc: subprocess.Popen[bytes] | None = None
    s3: Any = None  # (tests.seaweed.S3Server, bucket, prefix) when the server keeps its artifacts in S3

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def tenant(self, keyring: bool = True, ca: Path = DEV_CA) -> str:
        """A fresh tenant (with the RAUC test CA, or `ca`, as keyring); returns its admin token."""
        with self.client(self.admin) as c:
            r = c.post("/api/v1/tenants", json={"name": f"t-{uuid.uuid4().hex[:10]}"})
            r.raise_for_status()
            token: str = r.json()["token"]
            if keyring:
                c.put(
                    "/api/v1/keyring", json={"pem": Path(ca).read_text()}, headers={"authorization": f"Bearer {token}"}
                ).raise_for_status()
            return token


def stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def live_server(
    data: Path,
    env_extra: dict[str, str] | None = None,
    port: int | None = None,
    workers: int = 1,
    http_server: str = "granian",
    args: tuple[str, ...] = (),
    start_timeout: float = 60,
) -> Iterator[LiveServer]:
    """Start `bulkhead server` on `data` (SQLite unless env_extra has BULKHEAD_DATABASE_URL) and stop it after."""
    env = {**os.environ, "BULKHEAD_ADMIN_TOKEN": "", "BULKHEAD_MAX_UPLOAD_BYTES": str(1024 * 1024 * 1024)}
    env.pop("BULKHEAD_DATABASE_URL", None)
    env["BULKHEAD_HTTP_SERVER"] = http_server
    env.update(env_extra or {})
    port = port or free_port()
    data.mkdir(parents=True, exist_ok=True)
    log = (data / "server.log").open("ab")
    command = [sys.executable, "-m", "bulkhead.cli", "server", "--port", str(port), "--data-dir", str(data)]
    proc = subprocess.Popen(
        [*command, "--workers", str(workers), *args],
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout
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
        pytest.fail(f"server did not come up in {start_timeout:.0f} s")
    backend = "postgresql" if "BULKHEAD_DATABASE_URL" in (env_extra or {}) else "sqlite"
    try:
        yield LiveServer(url, (data / "admin.token").read_text().strip(), data, backend, proc)
    finally:
        stop(proc, 20)
