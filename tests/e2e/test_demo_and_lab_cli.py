"""The main job (`bulkhead demo`) and the lab's command line, run as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import Fleet, need_lab
from tests.live import free_port

CLI = [sys.executable, "-m", "bulkhead.cli"]


def _wait(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = cond()
        except (OSError, httpx.HTTPError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    """Running (a zombie left for a non-reaping init is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_demo_runs_server_and_a_lab_fleet_that_updates(tmp_path: Path) -> None:
    need_lab()
    port = free_port()
    data = tmp_path / "data"
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(
        [*CLI, "demo", "--port", str(port), "--data-dir", str(data), "--devices", "2"], stdout=log, stderr=log
    )
    lab = data / "demo" / "lab"
    try:
        token = _wait(lambda: (data / "demo" / "demo.token").read_text().strip(), 60, "the demo tenant")
        h = {"authorization": f"Bearer {token}"}

        def updated() -> bool:
            devs = httpx.get(f"http://127.0.0.1:{port}/api/v1/devices", headers=h).json()
            return len(devs) == 2 and all(
                d["update"].get("phase") == "success" and d["update"]["version"] == "1.1.0" for d in devs
            )

        _wait(updated, 180, "both demo devices to move to 1.1.0: " + (tmp_path / "demo.log").read_text()[-1000:])
        pid = int((lab / "supervisor.pid").read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    # The lab goes down with the demo: no supervisor, no agents, no RAUC services left behind.
    _wait(lambda: not (lab / "supervisor.pid").exists(), 30, "the lab to stop with the demo")
    assert not _alive(pid)
    left = subprocess.run(["pgrep", "-f", str(lab)], capture_output=True, text=True).stdout.split()
    assert left == []


def test_lab_cli_up_status_power_cut_down(fleet: Fleet) -> None:
    lab = fleet.work / "lab"
    env = {**os.environ, "BULKHEAD_SERVER": fleet.server.url, "BULKHEAD_BOOTSTRAP_TOKEN": fleet.bootstrap}
    up = subprocess.run(
        [*CLI, "lab", "up", "--devices", "2", "--keyring", str(fleet.pki.ca), "--dir", str(lab), "--poll-interval", "1"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    try:
        again = subprocess.run(
            [*CLI, "lab", "up", "--keyring", str(fleet.pki.ca), "--dir", str(lab)], env=env, capture_output=True, text=True
        )
        assert again.returncode == 2 and "already running" in again.stderr
        status = json.loads(
            subprocess.run([*CLI, "lab", "status", "--dir", str(lab), "--json"], capture_output=True, text=True).stdout
        )
        assert [(d["name"], d["booted"], d["boots"]) for d in status] == [("lab-000", "A", 1), ("lab-001", "A", 1)]
        _wait(lambda: fleet.show("lab-001")["reported"].get("os_version") == "1.0", 60, "lab-001 to enroll and report")
        subprocess.run([*CLI, "lab", "power-cut", "lab-001", "--dir", str(lab)], check=True)

        def rebooted() -> bool:
            rows = json.loads((lab / "status.json").read_text())
            return any(d["name"] == "lab-001" and d["boots"] == 2 and d["agent_running"] for d in rows)

        _wait(rebooted, 30, "lab-001 to boot again after the power cut")
    finally:
        down = subprocess.run([*CLI, "lab", "down", "--dir", str(lab)], capture_output=True, text=True, timeout=90)
    assert down.returncode == 0, down.stderr
    assert subprocess.run(["pgrep", "-f", str(lab)], capture_output=True, text=True).stdout.split() == []
    gone = subprocess.run([*CLI, "lab", "down", "--dir", str(lab)], capture_output=True, text=True)
    assert gone.returncode == 2 and "no lab is running" in gone.stderr
