"""Remote commands on the device (agent/commands.py): run once without a shell, killed with their children at the
time limit, output bounded whatever they write; against the real server, a command queued by an administrator is
started, run and reported, and one a stopped agent left running is reported interrupted, never run again."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkhead.agent.agent import Agent
from bulkhead.agent.commands import FILE_NAME, run_command
from bulkhead.protocol.commands import MAX_OUTPUT_BYTES
from tests.live import LiveServer, live_server

from .fakes import lab_agent


def test_a_command_runs_without_a_shell_and_reports_its_exit_code_and_output() -> None:
    assert run_command(["sh", "-c", "echo out; echo err >&2; exit 7"], 10) == ("exited", 7, "out\nerr\n", False)
    assert run_command(["echo", "$HOME;", "*"], 10) == ("exited", 0, "$HOME; *\n", False)  # no shell: as given
    status, code, text, cut = run_command(["/nonexistent/tool"], 10)
    assert (status, code, cut) == ("failed", None, False) and "/nonexistent/tool could not be started" in text


def test_nul_bytes_and_a_child_left_running_do_not_hold_the_result() -> None:
    assert run_command(["printf", "a\\000b"], 10) == ("exited", 0, "a\ufffdb", False)  # JSON carries no NUL
    started = time.monotonic()
    assert run_command(["sh", "-c", "sleep 30 & echo started"], 20) == ("exited", 0, "started\n", False)
    assert time.monotonic() - started < 5  # the shell exited: its child holding the pipe is not waited for


def test_output_beyond_the_bound_keeps_its_first_and_last_halves() -> None:
    script = "printf 'FIRST'; head -c 1000000 /dev/zero | tr '\\0' x; printf 'LAST'"
    status, code, text, cut = run_command(["sh", "-c", script], 30)
    assert (status, code, cut) == ("exited", 0, True)
    assert text.startswith("FIRST") and text.endswith("LAST")
    assert f"[... {1000000 + 9 - MAX_OUTPUT_BYTES} bytes left out ...]" in text
    assert len(text.encode()) < MAX_OUTPUT_BYTES + 100


def test_a_command_over_its_time_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    started = time.monotonic()
    status, code, text, _ = run_command(["sh", "-c", f"sleep 300 & echo $! > {pid_file}; echo waiting; wait"], 1)
    assert (status, code, text) == ("timed_out", None, "waiting\n") and time.monotonic() - started < 10
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the shell's child outlived the time limit"


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()  # a zombie is dead, waiting to be reaped
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("server"), http_server="uvicorn") as srv:
        yield srv


def _agent(server: LiveServer, data: Path, bootstrap: str) -> Agent:
    return lab_agent(server.url, data, "dev-cmd", bootstrap)


def test_a_command_whose_start_cannot_be_reported_is_not_run_and_is_asked_again(tmp_path: Path) -> None:
    from bulkhead.agent.client import Client
    from bulkhead.agent.commands import CommandRunner
    from tests.live import free_port

    runner = CommandRunner(Client(f"http://127.0.0.1:{free_port()}", timeout=2), tmp_path)  # nobody listens there
    ran = tmp_path / "ran"
    runner._run({"id": 7, "argv": ["touch", str(ran)], "timeout_seconds": 5})
    assert not ran.exists()
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {"started": [], "done": []}  # handed out again later


def _wait_status(server: LiveServer, token: str, cid: int, want: str, seconds: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    with server.client(token) as c:
        while (cmd := c.get(f"/api/v1/commands/{cid}").json())["status"] != want and time.monotonic() < deadline:
            time.sleep(0.1)
    return dict(cmd)


def test_an_administrators_command_runs_once_on_the_device_and_its_result_reaches_the_server(
    server: LiveServer, tmp_path: Path
) -> None:
    token = server.tenant()
    with server.client(token) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
    agent = _agent(server, tmp_path / "data", boot)
    agent.run_once()  # enrolls
    runs = tmp_path / "runs"
    with server.client(token) as c:
        argv = ["sh", "-c", f"echo run >> {runs}; echo hello from $(hostname); exit 5"]
        cid = c.post("/api/v1/devices/dev-cmd/commands", json={"argv": argv, "timeout_seconds": 20}).json()["id"]
    agent.run_once()
    done = _wait_status(server, token, cid, "exited")
    assert done["exit_code"] == 5 and done["output"] == f"hello from {os.uname().nodename}\n", done
    agent.run_once()
    agent.run_once()
    time.sleep(0.5)
    assert runs.read_text() == "run\n", "run once, whatever the polls after it"
    assert json.loads((tmp_path / "data" / FILE_NAME).read_text()) == {"started": [], "done": [cid]}

    # The agent stops while a command runs (simulated: its id recorded as started, as _run does first): the next
    # agent reports it interrupted and never runs it.
    with server.client(token) as c:
        cid2 = c.post("/api/v1/devices/dev-cmd/commands", json={"argv": ["sh", "-c", f"echo again >> {runs}"]}).json()["id"]
    (tmp_path / "data" / FILE_NAME).write_text(json.dumps({"started": [cid2], "done": [cid]}))
    restarted = _agent(server, tmp_path / "data", boot)
    restarted.run_once()
    cmd = _wait_status(server, token, cid2, "interrupted")
    assert cmd["status"] == "interrupted" and cmd["output"] == "the agent stopped while it ran"
    restarted.run_once()
    time.sleep(0.5)
    assert runs.read_text() == "run\n"
