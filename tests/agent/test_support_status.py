"""The device's support period (CRA): the real server says it in the desired state, the agent keeps it in a local
status file, and `bulkhead-agent status` prints it with the days left; a malformed one is refused at the edge."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkhead.agent import support
from bulkhead.agent.agent import Agent
from bulkhead.agent.config import AgentConfig, PodmanConfig
from bulkhead.agent.desired import check_state
from bulkhead.agent.errors import BadResponse
from bulkhead.agent.main import main
from tests.live import LiveServer, live_server
from tests.server.test_rollouts import GOOD

from .fakes import FakeRauc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("server"), http_server="uvicorn") as srv:
        yield srv


def test_the_agent_keeps_the_support_end_and_status_prints_it(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = server.tenant(keyring=False)
    with server.client(admin) as c:
        bootstrap = c.post("/api/v1/bootstrap-tokens", json={"name": "line"}).json()["token"]
        r = c.put("/api/v1/products/lab", json={"name": "Lab Gateway", "manufacturer": "Acme", "support_end": "2031-12-31"})
        assert r.status_code == 201, r.text
    data = tmp_path / "data"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'server = "{server.url}"\nname = "dev-cra"\ncompatible = "lab"\ndata_dir = "{data}"\n'
        f'bootstrap_token = "{bootstrap}"\nfiles_root = "{tmp_path / "root"}"\n[podman]\nenabled = false\n'
    )
    cfg = AgentConfig(
        server=server.url, data_dir=data, name="dev-cra", compatible="lab", bootstrap_token=bootstrap,
        files_root=tmp_path / "root", podman=PodmanConfig(enabled=False), os_release=tmp_path / "os-release",
    )  # fmt: skip
    agent = Agent(cfg)
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    assert agent.tick() > 0 and agent._failures == 0

    kept = json.loads((data / support.FILE_NAME).read_text())
    assert kept == {"support": {"product": "Lab Gateway", "manufacturer": "Acme", "support_end": "2031-12-31"}}
    assert main(["--config", str(config), "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["phase"] == "idle" and status["support"]["support_end"] == "2031-12-31"
    assert status["support"]["days_left"] == (dt.date(2031, 12, 31) - dt.date.today()).days
    assert status["support"]["ended"] is False

    # the manufacturer shortens the support period: the next pass rewrites the file
    with server.client(admin) as c:
        c.put("/api/v1/products/lab", json={"name": "Lab Gateway", "manufacturer": "Acme", "support_end": "2020-01-31"})
    for _ in range(50):  # the server's poll answers are cached for a moment
        agent.tick()
        if support.read_status(data / support.FILE_NAME) == {**kept["support"], "support_end": "2020-01-31"}:
            break
    assert main(["--config", str(config), "status"]) == 0
    assert json.loads(capsys.readouterr().out)["support"]["ended"] is True


def test_a_malformed_support_is_refused_and_the_kept_file_stays(tmp_path: Path) -> None:
    path = tmp_path / support.FILE_NAME
    good = {"desired": {}, "support": {"product": "P", "manufacturer": "M", "support_end": "2031-12-31"}}
    assert support.write_status(path, check_state(good)) is True
    assert support.write_status(path, good) is False  # unchanged: not written again
    for bad in ({"product": "P", "manufacturer": "M", "support_end": "soon"}, {"product": 7, "manufacturer": "M"}, ["x"]):
        with pytest.raises(BadResponse, match="support"):
            check_state({"desired": {}, "support": bad})
    assert support.read_status(path) == good["support"]
    assert support.write_status(path, {"desired": {}}) is True  # the server no longer says anything: neither does the file
    assert support.read_status(path) is None


def test_the_agent_keeps_its_pending_security_update_and_status_prints_it(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server's state answer names the pending security update (version, due date); the agent keeps it in the
    status file and `bulkhead-agent status` shows it."""
    admin = server.tenant()
    with server.client(admin) as c:
        bootstrap = c.post("/api/v1/bootstrap-tokens", json={"name": "line", "group": "field"}).json()["token"]
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
    data = tmp_path / "data"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'server = "{server.url}"\nname = "dev-sec"\ncompatible = "Test Config"\ndata_dir = "{data}"\n'
        f'bootstrap_token = "{bootstrap}"\nfiles_root = "{tmp_path / "root"}"\n[podman]\nenabled = false\n'
    )
    (tmp_path / "os-release").write_text('VERSION_ID="2011.03-1"\n')
    cfg = AgentConfig(
        server=server.url, data_dir=data, name="dev-sec", compatible="Test Config", bootstrap_token=bootstrap,
        files_root=tmp_path / "root", podman=PodmanConfig(enabled=False), os_release=tmp_path / "os-release",
    )  # fmt: skip
    agent = Agent(cfg)
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    assert agent.tick() > 0 and agent._failures == 0
    assert support.read_security(data / support.FILE_NAME) is None  # nothing pending yet

    with server.client(admin) as c:
        r = c.put(f"/api/v1/releases/{rel['id']}/security", json={"reason": "CVE-2027-0001"})
        assert r.status_code == 200, r.text
    pending = None
    for _ in range(50):  # the server's poll answers are cached for a moment
        agent.tick()
        pending = support.read_security(data / support.FILE_NAME)
        if pending is not None:
            break
    assert pending is not None and pending["version"] == "2011.03-2" and pending["mode"] == "automatic"
    due = dt.datetime.fromisoformat(pending["due_at"])
    assert due - dt.datetime.fromisoformat(pending["available_at"]) == dt.timedelta(days=7)
    assert main(["--config", str(config), "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["security_update"]["version"] == "2011.03-2" and status["security_update"]["due_at"] == pending["due_at"]

    for bad in ({"version": "2", "release_id": 1, "available_at": "x", "due_at": "y", "mode": "automatic"}, ["x"]):
        with pytest.raises(BadResponse, match="security"):
            check_state({"desired": {}, "security": bad})
