"""The agent against the real Bulkhead server: what the server sends passes the agent's checks at the edge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkhead.agent.agent import Agent
from bulkhead.agent.config import AgentConfig, PodmanConfig
from bulkhead.agent.desired import check_state
from tests.live import LiveServer, live_server

from .fakes import FakeRauc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("server"), http_server="uvicorn") as srv:
        yield srv


def test_enroll_poll_and_report_against_the_real_server(server: LiveServer, tmp_path: Path) -> None:
    admin = server.tenant(keyring=False)
    with server.client(admin) as c:
        bootstrap = c.post("/api/v1/bootstrap-tokens", json={"name": "line", "group": "line"}).json()["token"]
        for v in ("1", "2"):
            c.post(
                "/api/v1/apps", json={"name": "web", "version": v, "containers": [{"name": "m", "image": f"reg:5000/web:{v}"}]}
            )
        c.put("/api/v1/registries", json={"host": "reg:5000", "username": "u", "password": "p"}).raise_for_status()
        r = c.patch(
            "/api/v1/groups/line/desired",
            json={"apps": {"web": "1"}, "files": [{"path": "/etc/motd", "content": "hi ${name}\n", "template": True}]},
        )
        assert r.status_code == 200, r.text

    cfg = AgentConfig(
        server=server.url, data_dir=tmp_path / "data", name="dev-live", compatible="lab", bootstrap_token=bootstrap,
        files_root=tmp_path / "root", podman=PodmanConfig(enabled=False), os_release=tmp_path / "os-release",
    )  # fmt: skip
    agent = Agent(cfg)
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    assert agent.tick() > 0 and agent._failures == 0
    doc = json.loads(agent.desired_path.read_text())
    assert check_state(doc)["desired"]["apps"][0]["containers"][0]["image"] == "reg:5000/web:1"
    assert (tmp_path / "root" / "etc" / "motd").read_text() == "hi dev-live\n"
    assert agent.outbox.pending() == []  # the server acknowledged every event
    assert agent.poll() == doc  # 304 with the ETag: the kept document


def test_the_agent_renews_an_old_credential_and_keeps_working(server: LiveServer, tmp_path: Path) -> None:
    """A credential older than rotate_credential_days is swapped for a new one, on disk before it is used."""
    import os
    import time

    admin = server.tenant(keyring=False)
    with server.client(admin) as c:
        bootstrap = c.post("/api/v1/bootstrap-tokens", json={"name": "line"}).json()["token"]
    cfg = AgentConfig(
        server=server.url, data_dir=tmp_path / "data", name="dev-rot", compatible="lab", bootstrap_token=bootstrap,
        files_root=tmp_path / "root", podman=PodmanConfig(enabled=False), os_release=tmp_path / "os-release",
        rotate_credential_days=30,
    )  # fmt: skip
    agent = Agent(cfg)
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    assert agent.tick() > 0 and agent._failures == 0
    first = agent.credential_path.read_text()
    agent.tick()
    assert agent.credential_path.read_text() == first  # young: kept
    month_ago = time.time() - 31 * 86400
    os.utime(agent.credential_path, (month_ago, month_ago))
    assert agent.tick() > 0 and agent._failures == 0
    renewed = agent.credential_path.read_text()
    assert renewed != first and agent.client.credential == renewed
    assert agent.credential_path.stat().st_mtime > month_ago + 86400
    assert agent.poll() is not None  # the new credential works...
    with server.client(first) as old:
        assert old.get("/device/v1/state").status_code == 401  # ...and the old one is gone once it was used
