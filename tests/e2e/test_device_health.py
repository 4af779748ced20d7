"""Device metrics and alerts end to end: the real agent samples this machine's /proc and sends its figures with its
reports, `bulkhead device metrics` shows them, an alert rule on the disk fires at once for the device, and the live
server's notification job delivers it to a webhook (a real HTTP receiver)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.agent.fakes import lab_agent
from tests.live import live_server
from tests.server.test_notify_job import Receiver

CLI = [sys.executable, "-m", "bulkhead.cli"]


def test_metrics_reach_the_server_and_a_disk_alert_fires_a_webhook(tmp_path: Path) -> None:
    receiver = Receiver()
    with live_server(tmp_path / "server") as srv:
        admin = srv.tenant(keyring=False)
        env = {**os.environ, "BULKHEAD_SERVER": srv.url, "BULKHEAD_TOKEN": admin, "COLUMNS": "200"}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, env=env)

        with srv.client(admin) as c:
            boot = c.post("/api/v1/bootstrap-tokens", json={"name": "health"}).json()["token"]
            c.post(
                "/api/v1/notifications/subscriptions",
                json={"channel": "webhook", "target": receiver.url + "/alerts", "events": ["device.alert"]},
            ).raise_for_status()
        agent = lab_agent(srv.url, tmp_path / "agent", "health-dev", boot)
        agent.run_once()
        for _ in range(2):
            time.sleep(0.3)
            agent.metrics.sample()
        agent.flush()
        shown = cli("device", "metrics", "health-dev", "--json")
        rows = json.loads(shown.stdout)
        assert len(rows) == 2 and all(r["resolution"] == 0 for r in rows), shown.stderr
        assert rows[1]["memory_total"] > 0 and rows[1]["disk_total"] > 0 and rows[1]["uptime_seconds"] > 0
        table = cli("device", "metrics", "health-dev")
        assert table.returncode == 0 and "% of" in table.stdout  # memory and disk as a percentage of their size

        added = cli("alert", "add", "disk-used", "--metric", "disk_percent", "--above", "0.01", "--json")
        assert json.loads(added.stdout)["metric"] == "disk_percent", added.stderr
        agent.metrics.sample()
        agent.flush()
        firing = json.loads(cli("alert", "firing", "--json").stdout)
        assert [(f["alert"], f["device"]) for f in firing] == [("disk-used", "health-dev")]

        deadline = time.monotonic() + 90  # the notification job runs every minute
        while not receiver.got:
            assert time.monotonic() < deadline, "no webhook within 90 s"
            time.sleep(0.5)
        [req] = receiver.got
        body = json.loads(req["body"])
        assert body["kind"] == "device.alert" and "health-dev: alert disk-used fired (disk_percent" in body["summary"]
    receiver.httpd.shutdown()
