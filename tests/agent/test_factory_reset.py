"""A factory reset end to end on this host: the real server asks, the agent leaves its credential outside the data
partition and reboots, the reference image's erasure script (osbuild/layout.py) erases a real partition of a loop
device, and the agent, started again on the empty partition, enrolls again with the credential it held."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkhead.agent.agent import Agent
from bulkhead.agent.config import AgentConfig, PodmanConfig
from bulkhead.osbuild import layout as L
from tests.live import LiveServer, live_server

from .fakes import FakeRauc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("server"), http_server="uvicorn") as srv:
        yield srv


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[L.Layout]:
    """A layout whose data partition is a real block device: a loop device (this VM's loop devices have no
    partition nodes), reached as the layout's fourth partition through a link."""
    for tool, pkg in (("losetup", "mount"), ("mkfs.ext4", "e2fsprogs"), ("blkdiscard", "util-linux")):
        if shutil.which(tool) is None:
            pytest.skip(f"'{tool}' is missing: install the Debian package '{pkg}'")
    if os.geteuid() != 0:
        pytest.skip("the erasure works on a loop device: it needs root")
    image = tmp_path / "data.img"
    with image.open("wb") as f:
        f.truncate(16 << 20)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True)
    dev = loop.stdout.strip()
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "disk4").symlink_to(dev)
    try:
        lay = L.Layout(disk=str(tmp_path / "dev" / "disk"))
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "data", lay.part(4)], check=True)
        yield lay
    finally:
        subprocess.run(["umount", str(tmp_path / "data")], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", dev], check=False)


def _agent(server: LiveServer, data: Path, marker: Path, bootstrap: str) -> Agent:
    cfg = AgentConfig(
        server=server.url, data_dir=data / "bulkhead", name="dev-reset", compatible="lab", bootstrap_token=bootstrap,
        files_root=data / "root", podman=PodmanConfig(enabled=False), os_release=data / "os-release",
        factory_reset_marker=marker,
    )  # fmt: skip
    agent = Agent(cfg)
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    return agent


def test_the_agent_erases_its_data_and_enrolls_again_with_the_credential_it_held(
    server: LiveServer, tmp_path: Path, disk: L.Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = server.tenant(keyring=False)
    with server.client(admin) as c:
        bootstrap = c.post("/api/v1/bootstrap-tokens", json={"name": "line", "max_uses": 1}).json()["token"]
    data, esp = tmp_path / "data", tmp_path / "esp"
    data.mkdir()
    marker = esp / "bulkhead" / "factory-reset"
    subprocess.run(["mount", disk.part(4), str(data)], check=True)
    agent = _agent(server, data, marker, bootstrap)
    assert agent.tick() > 0 and agent._failures == 0
    held = agent.credential_path.read_text()
    (data / "user-data").write_text("the owner's secrets\n")

    with server.client(admin) as c:
        c.post("/api/v1/devices/dev-reset/factory-reset").raise_for_status()
    reboots: list[str] = []
    monkeypatch.setattr(agent, "_reboot", lambda: reboots.append("reboot"))  # the reboot of a real device
    assert agent.tick() > 0
    assert reboots == ["reboot"] and marker.read_text() == held + "\n"
    with server.client(admin) as c:
        events = c.get("/api/v1/devices/dev-reset/events").json()
    assert any(e["details"].get("event") == "factory_reset" for e in events)  # said before it rebooted

    # The boot: the image's script erases the data partition before it is mounted.
    subprocess.run(["umount", str(data)], check=True)
    script = tmp_path / "factory-reset"
    script.write_text(L.factory_reset_script(disk, str(marker)))
    script.chmod(0o755)
    run = subprocess.run([str(script)], capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "the data partition is empty" in run.stdout and not marker.exists()
    with open(disk.part(4), "rb") as part:  # nothing of the owner's data is left on the partition
        assert b"the owner's secrets" not in part.read()
    subprocess.run(["mount", disk.part(4), str(data)], check=True)
    assert sorted(p.name for p in data.iterdir()) == ["bulkhead", "lost+found"]

    again = _agent(server, data, marker, bootstrap)  # the bootstrap token is used up: the credential proves it
    assert again.tick() > 0 and again._failures == 0
    new = again.credential_path.read_text()
    assert new != held and not (data / "bulkhead" / "previous-credential").exists()
    with server.client(admin) as c:
        doc = c.get("/api/v1/devices/dev-reset").json()
        events = c.get("/api/v1/devices/dev-reset/events").json()
    assert doc["factory_reset_requested_at"] is None and doc["status"] == "active"
    assert any(e["details"] == {"event": "enrolled", "factory_reset": True} for e in events)
    assert json.loads(again.desired_path.read_text()).get("factory_reset") is None
    with server.client(held) as old:
        assert old.get("/device/v1/state").status_code == 401


def test_an_agent_without_a_marker_reports_that_it_cannot_reset(server: LiveServer, tmp_path: Path) -> None:
    admin = server.tenant(keyring=False)
    with server.client(admin) as c:
        bootstrap = c.post("/api/v1/bootstrap-tokens", json={"name": "line"}).json()["token"]
    agent = _agent(server, tmp_path, tmp_path / "unused", bootstrap)
    agent.cfg = AgentConfig(**{**agent.cfg.__dict__, "factory_reset_marker": None})
    assert agent.tick() > 0
    with server.client(admin) as c:
        c.post("/api/v1/devices/dev-reset/factory-reset").raise_for_status()
    agent.tick()
    agent.tick()  # said once
    with server.client(admin) as c:
        events = c.get("/api/v1/devices/dev-reset/events").json()
    failed = [e for e in events if e["details"].get("event") == "factory_reset_failed"]
    assert len(failed) == 1 and "no factory_reset_marker" in failed[0]["details"]["reason"]
    assert agent.client.credential and agent.poll() is not None  # it keeps working as it is


def test_an_erasure_that_did_not_run_is_reported_instead_of_rebooting_again(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marker outlived a reboot on a partition that still holds the agent's data: the image did not erase."""
    from bulkhead.agent import factory_reset

    admin = server.tenant(keyring=False)
    with server.client(admin) as c:
        bootstrap = c.post("/api/v1/bootstrap-tokens", json={"name": "line"}).json()["token"]
    marker = tmp_path / "esp" / "factory-reset"
    agent = _agent(server, tmp_path / "data", marker, bootstrap)
    assert agent.tick() > 0
    with server.client(admin) as c:
        c.post("/api/v1/devices/dev-reset/factory-reset").raise_for_status()
    reboots: list[str] = []
    monkeypatch.setattr(agent, "_reboot", lambda: reboots.append("reboot"))
    agent.tick()
    agent.tick()  # the same boot (the reboot command failed, say): it tries again
    assert reboots == ["reboot", "reboot"] and marker.exists()

    boot = tmp_path / "boot_id"
    boot.write_text("another-boot\n")
    monkeypatch.setattr(factory_reset, "BOOT_ID", boot)  # the machine came back up; nothing erased /data
    later = _agent(server, tmp_path / "data", marker, bootstrap)
    monkeypatch.setattr(later, "_reboot", lambda: reboots.append("reboot"))
    later.tick()
    later.tick()
    assert reboots == ["reboot", "reboot"]  # no reboot loop
    with server.client(admin) as c:
        events = c.get("/api/v1/devices/dev-reset/events").json()
    failed = [e for e in events if e["details"].get("event") == "factory_reset_failed"]
    assert len(failed) == 1 and "not erased at the last boot" in failed[0]["details"]["reason"]


def test_a_request_seen_only_in_the_kept_state_erases_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, the agent works from the last desired state; a reset in it may have been withdrawn since."""
    from tests.live import free_port

    data = tmp_path / "data"
    (data / "bulkhead").mkdir(parents=True)
    (data / "bulkhead" / "credential").write_text("bhd_held")
    doc = {"device": {"name": "dev-reset"}, "desired": {"release": None}, "factory_reset": {"requested_at": "2026-01-01"}}
    (data / "bulkhead" / "desired.json").write_text(json.dumps(doc))
    cfg = AgentConfig(
        server=f"http://127.0.0.1:{free_port()}", data_dir=data / "bulkhead", name="dev-reset", compatible="lab",
        files_root=data / "root", podman=PodmanConfig(enabled=False), os_release=data / "os-release",
        factory_reset_marker=tmp_path / "esp" / "factory-reset",
    )  # fmt: skip
    agent = Agent(cfg)
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    reboots: list[str] = []
    monkeypatch.setattr(agent, "_reboot", lambda: reboots.append("reboot"))
    agent.tick()
    assert agent.poll() == doc  # it does work from the kept state...
    assert reboots == [] and not cfg.factory_reset_marker.exists()  # ...but erases nothing on its word
