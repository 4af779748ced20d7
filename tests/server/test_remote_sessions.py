"""Remote sessions (services/remote_sessions.py, server/tunnel, api/remote.py) against a live server, both sides
played by the `websockets` library (written by others; the agent's own client is tested in tests/agent): joining,
byte counts, the idle timeout, one claim per connection, and every refusal with its reason."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.live import live_server
from tests.pg import pg_url
from tests.server.conftest import LiveServer
from tests.server.test_identity import bootstrap, enroll, state


def _ws(server: LiveServer, path: str, token: str) -> ClientConnection:
    ws = connect("ws" + server.url.removeprefix("http") + path, additional_headers={"authorization": f"Bearer {token}"})
    return ws.__enter__()  # as `with connect(...) as ws` gives it; the tests close their sockets themselves


def _json(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    msg = ws.recv(timeout=timeout)
    assert isinstance(msg, str), msg
    doc: dict[str, Any] = json.loads(msg)
    return doc


@contextmanager
def _tenant(server: LiveServer, idle: int | None = None) -> Iterator[tuple[httpx.Client, str, str]]:
    """A tenant with remote access on, and one enrolled device: (admin client, device name, device credential)."""
    admin = server.tenant(keyring=False)
    with server.client(admin) as c:
        on = c.put("/api/v1/remote-access", json={"enabled": True, "idle_timeout_seconds": idle})
        assert on.status_code == 200, on.text
        name = f"rs-{uuid.uuid4().hex[:6]}"
        credential = enroll(c, bootstrap(c, name), name).json()["credential"]
        yield c, name, credential


def _join(
    server: LiveServer, c: httpx.Client, name: str, credential: str, kind: str = "shell"
) -> tuple[Any, ClientConnection, ClientConnection, ClientConnection]:
    """Open a session and join it: (session, control channel, operator side, device side)."""
    control = _ws(server, "/device/v1/tunnel", credential)
    body = {"kind": kind, **({"target": "127.0.0.1:9"} if kind == "forward" else {})}
    session = c.post(f"/api/v1/devices/{name}/sessions", json=body).json()
    token = c.headers["authorization"].removeprefix("Bearer ")
    operator = _ws(server, f"/api/v1/sessions/{session['id']}/connect", token)
    opened = _json(control)
    assert opened["kind"] == kind and len(opened["open"]) == 32
    device = _ws(server, f"/device/v1/tunnel/{opened['open']}", credential)
    assert "joined" in _json(operator)
    return session, control, operator, device


def _closed(c: httpx.Client, session_id: int) -> dict[str, Any]:
    """The session once the server has closed it (it writes that after both sides are closed)."""
    deadline = time.monotonic() + 10
    while (shown := c.get(f"/api/v1/sessions/{session_id}").json())["status"] == "open":
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    return dict(shown)


def test_the_operator_and_the_device_are_joined_and_the_session_counts_bytes(server: LiveServer) -> None:
    with _tenant(server) as (c, name, credential):
        assert state(server, credential).json()["remote"]["tunnel"].endswith("/device/v1/tunnel")
        session, control, operator, device = _join(server, c, name, credential)
        operator.send(b"uname -a\n")
        assert device.recv(timeout=10) == b"uname -a\n"
        operator.send(json.dumps({"resize": [120, 40]}))
        assert json.loads(device.recv(timeout=10)) == {"resize": [120, 40]}  # control passes through as text
        device.send(b"x" * 100_000)
        got = b""
        while len(got) < 100_000:
            chunk = operator.recv(timeout=10)
            assert isinstance(chunk, bytes)
            got += chunk
        device.send(json.dumps({"exit": 0}))
        assert _json(operator) == {"exit": 0}
        device.close()
        shown = _closed(c, session["id"])
        assert shown["close_reason"] == "the shell exited with status 0"
        assert (shown["bytes_to_device"], shown["bytes_from_device"], shown["connections"]) == (9, 100_000, 1)
        control.close()
        operator.close()


def test_a_connection_is_claimed_once_and_only_by_its_own_device(server: LiveServer) -> None:
    with _tenant(server) as (c, name, credential):
        other = enroll(c, bootstrap(c, "other"), f"{name}-other").json()["credential"]
        control = _ws(server, "/device/v1/tunnel", credential)
        session = c.post(f"/api/v1/devices/{name}/sessions", json={"kind": "shell"}).json()
        operator = _ws(server, f"/api/v1/sessions/{session['id']}/connect", c.headers["authorization"][7:])
        conn = _json(control)["open"]
        stranger = _ws(server, f"/device/v1/tunnel/{conn}", other)
        assert "is not waiting for this device" in _json(stranger)["error"]
        device = _ws(server, f"/device/v1/tunnel/{conn}", credential)
        assert "joined" in _json(operator)
        again = _ws(server, f"/device/v1/tunnel/{conn}", credential)
        assert "is not waiting for this device" in _json(again)["error"]
        # A shell's session has one connection: a second one is refused.
        second = _ws(server, f"/api/v1/sessions/{session['id']}/connect", c.headers["authorization"][7:])
        assert "already joined" in _json(second)["error"]
        for ws in (control, operator, device, stranger, again, second):
            ws.close()


def test_a_session_idle_past_the_tenants_timeout_is_closed(server: LiveServer) -> None:
    with _tenant(server, idle=5) as (c, name, credential):
        session, control, operator, device = _join(server, c, name, credential, kind="forward")
        started = time.monotonic()
        assert _json(operator, timeout=20) == {"error": "closed: idle for more than 5 s"}
        assert 5 <= time.monotonic() - started < 15
        shown = _closed(c, session["id"])
        assert (shown["status"], shown["close_reason"]) == ("closed", "idle for more than 5 s")
        events = c.get("/api/v1/audit", params={"action": "device.session_close"}).json()
        assert any(e["details"]["session"] == session["id"] and e["actor"] == "system:server" for e in events)
        for ws in (control, operator, device):
            ws.close()


def test_refusals_say_why_and_change_nothing(server: LiveServer) -> None:
    with _tenant(server) as (c, name, credential):
        viewer_user = c.post("/api/v1/users", json={"name": "v", "role": "viewer"})
        assert viewer_user.status_code == 201
        viewer = c.post("/api/v1/tokens", json={"name": "v", "user": "v"}).json()["token"]
        with server.client(viewer) as v:
            r = v.post(f"/api/v1/devices/{name}/sessions", json={"kind": "shell"})
            assert r.status_code == 403 and "needs role 'operator'" in r.json()["message"]
            assert v.put("/api/v1/remote-access", json={"enabled": False}).status_code == 403
        cases = [
            ({"kind": "forward"}, 400, "needs its target"),
            ({"kind": "forward", "target": "127.0.0.1"}, 400, "is not host:port"),
            ({"kind": "forward", "target": "a b:80"}, 400, "is not host:port"),
            ({"kind": "forward", "target": "127.0.0.1:70000"}, 400, "is not host:port"),
            ({"kind": "shell", "target": "127.0.0.1:22"}, 400, "a shell has no target"),
            ({"kind": "telnet"}, 422, "shell"),
        ]
        for body, status, words in cases:
            r = c.post(f"/api/v1/devices/{name}/sessions", json=body)
            assert r.status_code == status and words in r.text, (body, r.status_code, r.text)
        assert c.post("/api/v1/devices/nope/sessions", json={"kind": "shell"}).status_code == 404
        assert c.put("/api/v1/remote-access", json={"enabled": True, "idle_timeout_seconds": 1}).status_code == 422
        assert c.get(f"/api/v1/devices/{name}/sessions").json() == []  # nothing was opened by any of these
        # WebSockets: a bad credential, a user on the device's side, a device on the operator's, an unknown session.
        assert "error" in _json(_ws(server, "/device/v1/tunnel", "bhd_not-a-token"))
        assert "for devices" in _json(_ws(server, "/device/v1/tunnel", c.headers["authorization"][7:]))["error"]
        assert "for users" in _json(_ws(server, "/api/v1/sessions/1/connect", credential))["error"]
        assert "does not exist" in _json(_ws(server, "/api/v1/sessions/999999/connect", c.headers["authorization"][7:]))["error"]
        # The tenant's switch off: no session, no control channel, no `remote` in the state answer; audited.
        assert c.put("/api/v1/remote-access", json={"enabled": False}).json()["enabled"] is False
        r = c.post(f"/api/v1/devices/{name}/sessions", json={"kind": "shell"})
        assert r.status_code == 403 and "remote access is off for this tenant" in r.json()["message"]
        assert "remote access is off" in _json(_ws(server, "/device/v1/tunnel", credential))["error"]
        assert "remote" not in state(server, credential).json()
        events = c.get("/api/v1/audit", params={"action": "tenant.remote_access"}).json()
        assert [e["details"]["enabled"] for e in events][:2] == [False, True]


@pytest.mark.parametrize("kind", ["shell", "forward"])
def test_turning_the_switch_off_closes_open_sessions(server: LiveServer, kind: str) -> None:
    with _tenant(server) as (c, name, credential):
        session, control, operator, device = _join(server, c, name, credential, kind=kind)
        c.put("/api/v1/remote-access", json={"enabled": False}).raise_for_status()
        assert _json(operator, timeout=15) == {"error": "closed: the session was closed"}
        shown = _closed(c, session["id"])
        assert (shown["status"], shown["close_reason"]) == ("closed", "remote access was turned off for the tenant")
        for ws in (control, operator, device):
            ws.close()


def test_across_hosts_the_relay_is_tcp_on_the_configured_address(tmp_path: Path) -> None:
    """Two hosts on one database: the operator on one, the device on the other, the relay over TCP (as
    BULKHEAD_TUNNEL_RELAY_HOST sets it for hosts that do not share a file system); one host's relay on a Unix
    socket is tested in tests/e2e/test_remote_sessions.py."""
    env = {"BULKHEAD_DATABASE_URL": pg_url(), "BULKHEAD_TUNNEL_RELAY_HOST": "127.0.0.1"}
    with live_server(tmp_path / "a", env) as a, live_server(tmp_path / "b", env) as b, _tenant(a) as (c, name, credential):
        control = _ws(b, "/device/v1/tunnel", credential)
        session = c.post(f"/api/v1/devices/{name}/sessions", json={"kind": "shell"}).json()
        operator = _ws(a, f"/api/v1/sessions/{session['id']}/connect", c.headers["authorization"][7:])
        conn = _json(control)["open"]
        device = _ws(b, f"/device/v1/tunnel/{conn}", credential)
        assert "joined" in _json(operator)
        operator.send(b"ping across hosts")
        assert device.recv(timeout=10) == b"ping across hosts"
        device.send(b"pong")
        assert operator.recv(timeout=10) == b"pong"
        device.send(json.dumps({"exit": 7}))
        assert _json(operator) == {"exit": 7}
        device.close()
        shown = _closed(c, session["id"])
        assert (shown["close_reason"], shown["bytes_to_device"], shown["bytes_from_device"]) == (
            "the shell exited with status 7",
            17,
            4,
        )
        for ws in (control, operator):
            ws.close()
