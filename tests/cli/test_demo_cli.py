"""`bulkhead demo --json` (no lab fleet: --devices 0, so it runs without root): its ready summary as JSON."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import CLI
from tests.live import free_port


def _summary(out: Path, err: Path, timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            doc: dict[str, Any] = json.loads(out.read_text())
            return doc
        except ValueError:  # nothing yet, or half written
            time.sleep(0.3)
    raise AssertionError("no JSON summary from the demo: " + err.read_text()[-2000:])


def test_demo_json_summary_with_a_relative_data_dir(tmp_path: Path) -> None:
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("'mkfs.ext4' is missing: install the Debian package e2fsprogs (the demo builds its releases)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKHEAD_")}
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [*CLI, "demo", "--port", str(port), "--data-dir", "data", "--devices", "0", "--json"],
            cwd=tmp_path, env=env, stdout=o, stderr=e,
        )  # fmt: skip
    try:
        doc = _summary(out, err, 120)
        ui = doc["ui"]
        login = {"tenant": ui["tenant"], "user": ui["user"], "password": ui["password"]}
        signed_in = httpx.post(ui["url"] + "login", data=login)  # the printed login works
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(60)
    token_file = tmp_path / "data" / "demo" / "demo.token"
    base = f"http://127.0.0.1:{port}"
    assert doc["server"] == base and doc["tenant"] == "demo" and doc["token_file"] == str(token_file)
    assert doc["export"] == f"export BULKHEAD_SERVER={base} BULKHEAD_TOKEN=$(cat {token_file})"
    assert set(doc["releases"]) == {"1.0.0", "1.1.0"} and doc["devices"] == [] and doc["lab"] is None
    assert doc["fleet"] == "no lab fleet (devices=0)"
    assert token_file.read_text().startswith("bht_")
    # The web UI's address and a login for the demo tenant
    assert signed_in.status_code == 303 and "bulkhead_session=" in signed_in.headers["set-cookie"]
    assert ui["url"] == f"{base}/ui/" and ui["tenant"] == "demo" and ui["user"] == "admin" and len(ui["password"]) >= 10
    assert (tmp_path / "data" / "demo" / "ui.password").read_text().strip() == ui["password"]
