"""The rauc-hawkbit client (PyPI, written by others) drives a real RAUC install through our DDI API, and a cancel."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bulkhead.lab import images
from bulkhead.lab.pki import make_pki
from bulkhead.lab.rauc_service import RaucDevice
from tests.e2e.conftest import COMPATIBLE, need_lab
from tests.interop import wait_for
from tests.live import live_server


def test_rauc_hawkbit_installs_through_rauc_and_rejects_a_cancel(tmp_path: Path) -> None:
    need_lab()
    client = shutil.which("rauc-hawkbit-client") or str(Path(__file__).parents[2] / ".venv/bin/rauc-hawkbit-client")
    if not Path(client).exists():
        pytest.skip("rauc-hawkbit is not installed: pip install rauc-hawkbit (needs libgirepository1.0-dev libcairo2-dev)")
    pki = make_pki(tmp_path / "pki")
    # The install lasts 12 s (a slot hook sleeps), longer than two polls, so the cancel arrives mid-install.
    bundle = images.build_release(tmp_path, COMPATIBLE, "2.0", pki.cert, pki.key, install_seconds=12)
    with (
        live_server(tmp_path / "server", {"BULKHEAD_POLL_INTERVAL": "5"}) as srv,
        RaucDevice(tmp_path / "dev", COMPATIBLE, pki.ca, slot_size=8 << 20) as rauc,
    ):
        rauc.start("A")
        c = srv.client(srv.tenant(ca=pki.ca))
        tenant = c.get("/api/v1/tenant").json()["name"]
        rel = c.post("/api/v1/releases", content=bundle.read_bytes()).json()
        token = c.post("/api/v1/devices", json={"name": "hb-1", "compatible": COMPATIBLE, "groups": ["hb"]}).json()[
            "target_token"
        ]
        c.post("/api/v1/rollouts", json={"name": "hb", "release_id": rel["id"], "type": "forced", "target": {"groups": ["hb"]}})
        cfg = tmp_path / "client.cfg"
        cfg.write_text(
            "[client]\n"
            f"hawkbit_server = {srv.url.removeprefix('http://')}\nssl = false\ntenant_id = {tenant}\n"
            f"target_name = hb-1\nauth_token = {token}\nmac_address = 02:00:00:00:00:01\n"
            f"bundle_download_location = {tmp_path / 'bundle.raucb'}\nlog_level = debug\n"
        )
        log = tmp_path / "client.log"
        proc = subprocess.Popen([client, "-c", str(cfg)], env=rauc.env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:

            def action() -> dict[str, Any]:
                rows: list[dict[str, Any]] = c.get("/api/v1/rollouts/hb/actions").json()
                return rows[0]

            # The client passes RAUC's progress on as 'proceeding' feedback: the action shows the install.
            wait_for(lambda: action()["status"] == "installing", 60, "the client to start the install", log)
            assert c.post("/api/v1/rollouts/hb/cancel").json()["status"] == "canceled"
            assert action()["status"] == "canceling"
            # The client answers the cancelAction with 'rejected' ("Cancelling not supported") and carries on.
            wait_for(lambda: action()["status"] != "canceling", 30, "the client's answer to the cancel", log)
            done = wait_for(lambda: not (a := action())["active"] and a, 60, "the install to finish", log)
            assert done["status"] == "success", done
            statuses = [h["status"] for h in done["history"]]
            assert statuses.index("downloading") < statuses.index("installing") < statuses.index("canceling")
            assert statuses.index("canceling") < statuses.index("success")
            # ... and what the client reported is the device's event history too.
            phases = [e["phase"] for e in c.get("/api/v1/devices/hb-1/events", params={"limit": 1000}).json()]
            assert phases[0] == "success" and "installing" in phases and phases[-1] == "downloading"
            assert any("Cancelling not supported" in (h.get("message") or "") for h in done["history"])
            status = json.loads(rauc.rauc("status", "--detailed", "--output-format=json").stdout)
            slot_b = next(s for s in status["slots"] for name, s in s.items() if s.get("bootname") == "B")
            assert slot_b["slot_status"]["bundle"]["version"] == "2.0"
            assert rauc.primary() == "B"
            assert "Rauc bundle update completed with result: 0" in log.read_text()
        finally:
            proc.terminate()
            proc.wait(10)
        c.close()
