"""SWUpdate's suricatta (Debian's swupdate, written by others) installs a signed .swu through our DDI API, and a cancel."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bulkhead.lab.pki import DemoPki, make_pki
from tests.interop import wait_for
from tests.live import LiveServer, live_server, stop
from tests.swu.conftest import signed_swu

COMPATIBLE = "swu-board"


def _need_swupdate() -> str:
    exe = shutil.which("swupdate")
    if exe is None:
        pytest.skip("swupdate is not installed: apt install swupdate (make setup installs it)")
    return exe


def _swu(tmp: Path, pki: DemoPki, version: str, payload: Path, target_dir: Path) -> Path:
    target_dir.mkdir(parents=True, exist_ok=True)  # SWUpdate 2022.12 does not create it
    return signed_swu(tmp / f"update-{version}.swu", pki, version, {payload.name: payload}, target_dir)


class Fleet:
    """One tenant with our CA as keyring, and a device provisioned for suricatta."""

    def __init__(self, srv: LiveServer, pki: DemoPki) -> None:
        self.c = srv.client(srv.tenant(ca=pki.ca))
        self.url = srv.url
        self.tenant = self.c.get("/api/v1/tenant").json()["name"]
        r = self.c.post("/api/v1/devices", json={"name": "sw-1", "compatible": COMPATIBLE, "groups": ["sw"]})
        r.raise_for_status()
        self.token = r.json()["target_token"]

    def release(self, swu: Path) -> dict[str, Any]:
        r = self.c.post("/api/v1/releases", params={"compatible": COMPATIBLE}, content=swu.read_bytes())
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def rollout(self, name: str, release_id: int) -> None:
        body = {"name": name, "release_id": release_id, "type": "forced", "target": {"groups": ["sw"]}}
        self.c.post("/api/v1/rollouts", json=body).raise_for_status()

    def action(self, rollout: str) -> dict[str, Any]:
        rows: list[dict[str, Any]] = self.c.get(f"/api/v1/rollouts/{rollout}/actions").json()
        return rows[-1]


@contextmanager
def suricatta(fleet: Fleet, pki: DemoPki, run: Path, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """swupdate in suricatta mode, with its IPC sockets and temporary files in `run` (tests may run in parallel)."""
    run.mkdir(parents=True, exist_ok=True)
    args = f"-t {fleet.tenant} -u {fleet.url} -i sw-1 -k {fleet.token} -p 1 " + " ".join(extra)
    cmd = [_need_swupdate(), "-v", "-k", str(pki.ca), "-H", "board:1.0", "-u", args]
    env = {**os.environ, "TMPDIR": str(run)}
    proc = subprocess.Popen(cmd, cwd=run, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop(proc, 10)


def test_suricatta_installs_a_swu_and_reports_success_after_the_reboot(tmp_path: Path) -> None:
    _need_swupdate()
    pki = make_pki(tmp_path / "pki")
    payload = tmp_path / "app.conf"
    payload.write_text("release 1.1\n")
    installed = tmp_path / "rootfs" / "etc" / "app.conf"
    swu = _swu(tmp_path, pki, "1.1", payload, installed.parent)
    log = tmp_path / "swupdate.log"
    with live_server(tmp_path / "server", {"BULKHEAD_POLL_INTERVAL": "5"}) as srv:
        fleet = Fleet(srv, pki)
        rel = fleet.release(swu)
        assert (rel["format"], rel["version"], rel["compatible"]) == ("swu", "1.1", COMPATIBLE)
        fleet.rollout("swu", rel["id"])
        with suricatta(fleet, pki, tmp_path / "run", log):
            wait_for(installed.exists, 60, "suricatta to install the .swu", log)
            # Installed, waiting for the reboot: SWUpdate reports the outcome only after it.
            wait_for(lambda: "All Chunks Installed" in str(fleet.action("swu")["history"]), 30, "the install report", log)
        assert installed.read_text() == "release 1.1\n"
        act = fleet.action("swu")
        assert act["active"], act
        # After the "reboot", swupdate starts with -c 2 (the update booted fine) and closes the action.
        with suricatta(fleet, pki, tmp_path / "run", log, "-c 2"):
            done = wait_for(lambda: not (a := fleet.action("swu"))["active"] and a, 60, "the success report", log)
        assert done["status"] == "success", done
        rollout_done = lambda: fleet.c.get("/api/v1/rollouts/swu").json()["status"] == "finished"  # noqa: E731
        wait_for(rollout_done, 30, "the rollout to finish (a background job)", log)
        # The download went through the DDI artifact link, counted against the device.
        # (the delivery counters reach the database in aggregate, every few seconds)
        served = wait_for(lambda: fleet.c.get("/api/v1/devices/sw-1").json()["bytes_served"], 30, "the byte count", log)
        assert served == swu.stat().st_size
        assert fleet.action("swu")["bytes"] == swu.stat().st_size


def test_suricatta_acknowledges_a_cancel_during_the_download(tmp_path: Path) -> None:
    _need_swupdate()
    pki = make_pki(tmp_path / "pki")
    payload = tmp_path / "rootfs.img"
    payload.write_bytes(os.urandom(8 << 20))
    installed = tmp_path / "slot" / "rootfs.img"
    swu = _swu(tmp_path, pki, "2.0", payload, installed.parent)
    log = tmp_path / "swupdate.log"
    with live_server(tmp_path / "server", {"BULKHEAD_POLL_INTERVAL": "5"}) as srv:
        fleet = Fleet(srv, pki)
        rel = fleet.release(swu)
        fleet.rollout("slow", rel["id"])
        # 8 MiB at 256 KiB/s: the download lasts about 30 s, and suricatta checks for a cancel every second.
        with suricatta(fleet, pki, tmp_path / "run", log, "-n 256k"):
            # SWUpdate streams the download into its installer and says "Installing Update Chunk Artifacts." first.
            under_way = lambda: fleet.action("slow")["status"] == "installing"  # noqa: E731
            wait_for(under_way, 60, "suricatta to start the download", log)
            assert fleet.c.post("/api/v1/rollouts/slow/cancel").json()["status"] == "canceled"
            assert fleet.action("slow")["status"] == "canceling"
            done = wait_for(lambda: not (a := fleet.action("slow"))["active"] and a, 60, "suricatta's cancel answer", log)
        assert done["status"] == "canceled", done
        assert any("cancellation acknowledged" in (h.get("message") or "") for h in done["history"]), done["history"]
        assert not installed.exists()
        assert "Update cancelled" in log.read_text() or "cancel" in log.read_text().lower()
