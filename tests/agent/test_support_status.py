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
