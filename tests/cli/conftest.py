"""A live server shared by a test module, and the `bulkhead` CLI run against it as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.live import LiveServer, live_server

CLI = [sys.executable, "-m", "bulkhead.cli"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("cli-server")) as s:
        yield s


def cli(srv: LiveServer, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BULKHEAD_SERVER": srv.url, "BULKHEAD_TOKEN": token, "COLUMNS": "200"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, env=env)
