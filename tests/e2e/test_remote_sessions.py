"""Remote sessions end to end: `bulkhead device shell|forward` against one server host, the real agent's tunnel
dialing another (two `bulkhead server` processes sharing one PostgreSQL), so every byte crosses the relay between
server processes as it does behind a load balancer.

The lab device is the real agent (agent/tunnel.py) on this host: its shell is a real pseudo-terminal, its port
forward reaches an HTTP server inside a real Podman container.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.agent.fakes import lab_agent
from tests.live import LiveServer, free_port, live_server
from tests.pg import pg_url

CLI = [sys.executable, "-m", "bulkhead.cli"]
DEVICE = "remote-dev"


@dataclass
class Setup:
    operator_side: LiveServer  # where the CLI goes
    device_side: LiveServer  # where the agent goes
    admin: str  # the tenant's admin token

    def api(self, token: str | None = None) -> httpx.Client:
        return self.operator_side.client(token or self.admin)

    def cli(self, *args: str, token: str | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, env=self.env(token), **kw)  # type: ignore[call-overload]

    def env(self, token: str | None = None) -> dict[str, str]:
        return {**os.environ, "BULKHEAD_SERVER": self.operator_side.url, "BULKHEAD_TOKEN": token or self.admin, "COLUMNS": "200"}

    def token(self, role: str) -> str:
        with self.api() as c:
            c.post("/api/v1/users", json={"name": f"u-{role}", "role": role}).raise_for_status()
            made = c.post("/api/v1/tokens", json={"name": f"t-{role}", "user": f"u-{role}"})
            made.raise_for_status()
            return str(made.json()["token"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("remote")
    env = {"BULKHEAD_DATABASE_URL": pg_url()}
    with live_server(work / "a", env) as a, live_server(work / "b", env) as b:
        admin = a.tenant(keyring=False)
        s = Setup(a, b, admin)
        switched = s.cli("remote-access", "--enable", "--idle-timeout", "600", "--record", "--json")
        assert json.loads(switched.stdout) == {"enabled": True, "idle_timeout_seconds": 600, "record": True}, switched.stderr
        with s.api() as c:
            boot = c.post("/api/v1/bootstrap-tokens", json={"name": "remote"}).json()["token"]
        agent = lab_agent(b.url, work / "agent", DEVICE, boot)
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                agent.run_once()
                stop.wait(0.5)

        agent.run_once()
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while agent.tunnel._ws is None and time.monotonic() < deadline:  # the control channel is up
            time.sleep(0.1)
        try:
            yield s
        finally:
            stop.set()
            t.join(10)
            agent.tunnel.stop()


def test_a_shell_runs_a_command_and_exits_with_its_status(setup: Setup, tmp_path: Path) -> None:
    run = setup.cli("device", "shell", DEVICE, input="echo hello-$((6*7)) from $(hostname)\nexit 3\n", timeout=60)
    assert "hello-42 from" in run.stdout, run.stderr
    assert run.returncode == 3, run.stderr
    with setup.api() as c:
        (last, *_) = c.get(f"/api/v1/devices/{DEVICE}/sessions").json()
    assert (last["kind"], last["status"], last["close_reason"]) == ("shell", "closed", "the shell exited with status 3")
    assert last["bytes_to_device"] > 20 and last["bytes_from_device"] > 20 and last["connections"] == 1
    # The tenant records shells: the session's output as asciicast v2.
    cast = tmp_path / "session.cast"
    got = setup.cli("device", "recording", str(last["id"]), "-o", str(cast), "--json")
    assert json.loads(got.stdout)["bytes"] == last["recording_bytes"] > 0, got.stderr
    header, *events = (json.loads(line) for line in cast.read_text().splitlines())
    assert header["version"] == 2 and {e[1] for e in events} == {"o"}
    assert "hello-42 from" in "".join(e[2] for e in events)


def test_ctrl_c_reaches_the_remote_process_through_a_real_terminal(setup: Setup) -> None:
    pid, fd = _shell_on_a_terminal(setup)
    seen = bytearray()

    def until(marker: bytes, seconds: float) -> None:
        _read_until(fd, seen, marker, seconds)

    try:
        os.write(fd, b"stty size; echo ready-$((1+1))\n")
        until(b"ready-2", 30)
        os.write(fd, b"sleep 300\n")
        time.sleep(1.5)
        started = time.monotonic()
        os.write(fd, b"\x03")  # Ctrl-C on the operator's terminal: SIGINT to the remote foreground process
        os.write(fd, b"echo status-$?\n")
        until(b"status-130", 20)
        assert time.monotonic() - started < 20
        os.write(fd, b"exit\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        _reap(pid, fd)


def _shell_on_a_terminal(setup: Setup) -> tuple[int, int]:
    """`bulkhead device shell` on a pseudo-terminal of its own: (its pid, the terminal's fd)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(CLI[0], [*CLI, "device", "shell", DEVICE], setup.env())
    return pid, fd


def _reap(pid: int, fd: int) -> None:
    """Kill and reap the CLI (if still running) and close its terminal."""
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    os.close(fd)


def _read_until(fd: int, seen: bytearray, marker: bytes, seconds: float) -> None:
    """Read the terminal `fd` into `seen` until `marker` shows (fails after `seconds`)."""
    end = time.monotonic() + seconds
    while marker not in seen:
        left = end - time.monotonic()
        assert left > 0, f"no {marker!r} in {bytes(seen)[-500:]!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                seen.extend(os.read(fd, 4096))
            except OSError:
                break
    assert marker in seen, f"the terminal ended without {marker!r}: {bytes(seen)[-500:]!r}"


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTP server (busybox httpd) in a real Podman container; its address on the container network."""
    for tool, pkg in (("podman", "podman"), ("runc", "runc"), ("busybox", "busybox-static")):
        if shutil.which(tool) is None:
            pytest.skip(f"'{tool}' is missing: install the Debian package '{pkg}'")
    d = tmp_path_factory.mktemp("httpd")
    (d / "root" / "bin").mkdir(parents=True)
    (d / "root" / "www").mkdir()
    shutil.copy("/usr/bin/busybox", d / "root" / "bin" / "busybox")
    (d / "root" / "www" / "index.html").write_text("served from inside the container\n")
    subprocess.run(["tar", "-C", str(d / "root"), "-cf", str(d / "img.tar"), "."], check=True)
    image, name = "localhost/bulkhead-test-httpd:1", f"bulkhead-httpd-{os.getpid()}"
    subprocess.run(["podman", "import", "--quiet", str(d / "img.tar"), image], check=True, capture_output=True)
    subprocess.run(
        ["podman", "run", "-d", "--rm", "--name", name, "--runtime", "runc", "--ulimit", "nofile=1024:1024",
         "--ulimit", "nproc=1024:1024", image, "/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        ip = subprocess.run(
            ["podman", "inspect", name, "--format", "{{.NetworkSettings.IPAddress}}"], check=True, capture_output=True, text=True
        ).stdout.strip()
        yield ip
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], check=False, capture_output=True)


def test_a_port_forward_reaches_an_http_server_inside_a_container(setup: Setup, container: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "device", "forward", DEVICE, f"{port}:{container}:8080"],
        env={**setup.env(), "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                bodies = [httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text for _ in range(3)]
                break
            except httpx.ConnectError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
        assert bodies == ["served from inside the container\n"] * 3
    finally:
        # SIGTERM (`kill`): the CLI ends as at Ctrl-C, closing the session. Not SIGINT itself: a shell starts its
        # background jobs with SIGINT ignored, and CI may run under one.
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)  # its output read meanwhile: a full pipe must not hold it
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack to stderr
            _, err = proc.communicate(timeout=20)
            pytest.fail(f"the CLI did not end at Ctrl-C within 60 s; its threads:\n{err[-6000:]}")
    with setup.api() as c:
        (last, *_) = c.get(f"/api/v1/devices/{DEVICE}/sessions").json()
    assert (last["kind"], last["target"], last["status"]) == ("forward", f"{container}:8080", "closed")
    assert last["connections"] == 3 and last["bytes_from_device"] > 3 * len("served from inside the container\n")


def test_a_viewer_is_refused_and_every_session_is_in_the_audit_log(setup: Setup) -> None:
    viewer = setup.token("viewer")
    refused = setup.cli("device", "shell", DEVICE, token=viewer, input="id\n", timeout=60)
    assert refused.returncode == 2 and "needs role 'operator'" in refused.stderr and "Traceback" not in refused.stderr
    operator = setup.token("operator")
    ran = setup.cli("device", "shell", DEVICE, token=operator, input="exit 0\n", timeout=60)
    assert ran.returncode == 0, ran.stderr
    with setup.api() as c:
        events = c.get("/api/v1/audit", params={"action": "device.session"}).json()
        sessions = c.get(f"/api/v1/devices/{DEVICE}/sessions").json()
    opened = {e["details"]["session"]: e for e in events if e["action"] == "device.session_open"}
    closed = {e["details"]["session"]: e for e in events if e["action"] == "device.session_close"}
    assert {s["id"] for s in sessions} <= set(opened) and {s["id"] for s in sessions if s["status"] == "closed"} <= set(closed)
    listed = setup.cli("device", "sessions", DEVICE, "--json", token=operator)
    assert [x["id"] for x in json.loads(listed.stdout)] == [x["id"] for x in sessions]
    mine = sessions[0]
    assert opened[mine["id"]]["actor"].startswith("user:u-operator") and mine["opened_by"].startswith("user:u-operator")
    assert closed[mine["id"]]["details"]["duration_seconds"] >= 0 and closed[mine["id"]]["details"]["reason"]


def test_with_the_tenant_switch_off_sessions_are_refused_and_open_ones_closed(setup: Setup) -> None:
    pid, fd = _shell_on_a_terminal(setup)
    try:
        os.write(fd, b"echo live-$((2+3))\n")
        _read_until(fd, bytearray(), b"live-5", 30)
        with setup.api() as c:
            off = c.put("/api/v1/remote-access", json={"enabled": False})
            assert off.json()["enabled"] is False
        _, status = os.waitpid(pid, 0)  # the open shell is closed within seconds
        assert os.waitstatus_to_exitcode(status) == 2
        refused = setup.cli("device", "shell", DEVICE, input="id\n", timeout=60)
        assert refused.returncode == 2 and "remote access is off for this tenant" in refused.stderr
    finally:
        with setup.api() as c:
            c.put("/api/v1/remote-access", json={"enabled": True}).raise_for_status()
        _reap(pid, fd)
