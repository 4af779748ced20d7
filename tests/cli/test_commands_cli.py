"""`bulkhead device run|commands|command` against a live server, with the real agent running the commands."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from tests.agent.fakes import lab_agent
from tests.live import LiveServer

from .conftest import cli


def _agent_polling(srv: LiveServer, token: str, data: Path, stop: threading.Event) -> threading.Thread:
    with srv.client(token) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "cli-cmd"}).json()["token"]
    agent = lab_agent(srv.url, data, "cli-dev", boot)
    agent.run_once()  # enrolled before the CLI names it

    def loop() -> None:
        while not stop.wait(0.3):
            agent.run_once()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def test_run_waits_for_the_devices_result_and_exits_with_its_verdict(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    stop = threading.Event()
    t = _agent_polling(srv, token, tmp_path / "agent", stop)
    try:
        ok = cli(srv, token, "device", "run", "cli-dev", "--", "sh", "-c", "echo fine")
        assert ok.returncode == 0, ok.stderr
        assert "cli-dev: command" in ok.stdout and "exited, exit code 0" in ok.stdout and "fine" in ok.stdout
        bad = cli(srv, token, "device", "run", "cli-dev", "--json", "--", "sh", "-c", "echo broken >&2; exit 4")
        assert bad.returncode == 3  # EXIT_REMOTE: the device's command failed, not the CLI
        (cmd,) = json.loads(bad.stdout)
        assert (cmd["status"], cmd["exit_code"], cmd["output"]) == ("exited", 4, "broken\n")
        listed = cli(srv, token, "device", "commands", "cli-dev", "--json")
        assert [c["id"] for c in json.loads(listed.stdout)] == [cmd["id"], cmd["id"] - 1]
        shown = cli(srv, token, "device", "command", str(cmd["id"]))
        assert shown.returncode == 0 and "broken" in shown.stdout
        # The journal, through journalctl on the device (this host has no journal files: journalctl says so, exit 0).
        logs = cli(srv, token, "device", "logs", "cli-dev", "-u", "bulkhead-agent", "--since", "-1h", "-n", "20")
        assert logs.returncode == 0, logs.stderr
        assert "-- No entries --" in logs.stdout
    finally:
        stop.set()
        t.join(10)
    queued = cli(srv, token, "device", "run", "cli-dev", "--no-wait", "--json", "--", "true")
    (pending,) = json.loads(queued.stdout)
    assert queued.returncode == 0 and pending["status"] == "pending"
    withdrawn = cli(srv, token, "device", "command", str(pending["id"]), "--cancel", "--json")
    assert json.loads(withdrawn.stdout)["status"] == "canceled"
    refused = cli(srv, token, "device", "run", "cli-dev", "--", "sh", "-c", "x" * 20000)
    assert refused.returncode == 2 and "put a script in a file" in refused.stderr and "Traceback" not in refused.stderr
