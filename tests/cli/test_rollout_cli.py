"""`bulkhead rollout create` against a live server: an app version or a release, and the user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


def test_rollout_create_with_an_app_version(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    with srv.client(token) as c:
        r = c.post("/api/v1/apps", json={"name": "shop", "version": "2", "containers": [{"name": "m", "image": "shop:2"}]})
        r.raise_for_status()
    res = cli(srv, token, "rollout", "create", "shop-2", "--app", "shop:2", "--group", "line", "--json")
    assert res.returncode == 0, res.stderr
    ro = json.loads(res.stdout)
    assert ro["subject"] == "app shop:2" and ro["release_id"] is None and ro["target"]["groups"] == ["line"]
    listed = cli(srv, token, "rollout", "list")
    assert listed.returncode == 0 and "app shop:2" in listed.stdout

    for args, message in (
        (("--app", "shop"), "NAME:VERSION"),
        (("--app", "shop:9"), "app 'shop' version '9' does not exist"),
        (("--app", "shop:2", "--release", "1"), "either --release"),
        ((), "either --release"),
    ):
        res = cli(srv, token, "rollout", "create", "bad", *args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    with srv.client(token) as c:
        assert [r["name"] for r in c.get("/api/v1/rollouts").json()] == ["shop-2"]
