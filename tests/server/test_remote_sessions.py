"""Remote sessions (services/remote_sessions.py, server/tunnel, api/remote.py) against a live server, both sides
played by the `websockets` library (written by others; the agent's own client is tested in tests/agent): joining,
byte counts, the idle timeout, one claim per connection, and every refusal with its reason."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from bulkhead.server.db import Database
from bulkhead.server.models import BootstrapToken, Device, Tenant, utcnow
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.remote_sessions import RemoteSessionService
from bulkhead.server.tunnel_models import RemoteSession
from tests.live import live_server
from tests.pg import pg_url
from tests.server.conftest import LiveServer
from tests.server.test_identity import bootstrap, enroll, state


def _ws(server: LiveServer, path: str, token: str) -> ClientConnection:
    ws = connect("ws" + server.url.removeprefix("http") + path, additional_headers={"authorization": f"Bearer {token}"})
    return ws.__enter__()  # as `with connect(...) as ws` gives it; the tests close their sockets themselves


def _refused(server: LiveServer, path: str, token: str) -> tuple[int, str]:
    """The HTTP status (and body) of a WebSocket upgrade the server refuses."""
    with pytest.raises(InvalidStatus) as refused:
        _ws(server, path, token)
    return refused.value.response.status_code, refused.value.response.body.decode(errors="replace")


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
    url, headers = f"{str(c.base_url).rstrip('/')}/api/v1/sessions/{session_id}", {"authorization": c.headers["authorization"]}
    # A new connection each time: after a wait the client's kept-alive one may meet uvicorn's 5 s keep-alive closing.
    while (shown := httpx.get(url, headers=headers).json())["status"] == "open":
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
        session, control, operator, device = _join(server, c, name, credential)
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
        # WebSockets: a bad credential and a user on the device's side are refused before the socket opens (the
        # agent backs off); a device on the operator's side and an unknown session are told why.
        assert _refused(server, "/device/v1/tunnel", "bhd_not-a-token")[0] == 401
        status, why = _refused(server, "/device/v1/tunnel", c.headers["authorization"][7:])
        assert status == 403 and ("for devices" in why or server.backend != "sqlite")  # granian sends no body
        assert _refused(server, "/api/v1/sessions/99999999999999999999/connect", c.headers["authorization"][7:])[0] == 403
        assert "for users" in _json(_ws(server, "/api/v1/sessions/1/connect", credential))["error"]
        assert "does not exist" in _json(_ws(server, "/api/v1/sessions/999999/connect", c.headers["authorization"][7:]))["error"]
        # The tenant's switch off: no session, no control channel, no `remote` in the state answer; audited.
        assert c.put("/api/v1/remote-access", json={"enabled": False}).json()["enabled"] is False
        r = c.post(f"/api/v1/devices/{name}/sessions", json={"kind": "shell"})
        assert r.status_code == 403 and "remote access is off for this tenant" in r.json()["message"]
        assert _refused(server, "/device/v1/tunnel", credential)[0] == 403
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


def test_a_disabled_device_loses_its_tunnel_and_its_sessions(server: LiveServer) -> None:
    with _tenant(server) as (c, name, credential):
        session, control, operator, device = _join(server, c, name, credential)
        c.post(f"/api/v1/devices/{name}/disable").raise_for_status()
        assert _json(operator, timeout=15) == {"error": f"closed: device '{name}' is disabled"}
        with pytest.raises(ConnectionClosed):  # the control channel is closed within the change feed's half second
            while True:
                control.recv(timeout=10)
        shown = _closed(c, session["id"])
        assert shown["close_reason"] == f"device '{name}' is disabled"
        assert _refused(server, "/device/v1/tunnel", credential)[0] in (401, 403)
        for ws in (operator, device):
            ws.close()


def test_only_the_sessions_owner_or_an_administrator_joins_it(server: LiveServer) -> None:
    with _tenant(server) as (c, name, _credential):
        for user in ("op1", "op2"):
            c.post("/api/v1/users", json={"name": user, "role": "operator"}).raise_for_status()
        op1, op2 = (c.post("/api/v1/tokens", json={"name": u, "user": u}).json()["token"] for u in ("op1", "op2"))
        with server.client(op1) as o1:
            session = o1.post(f"/api/v1/devices/{name}/sessions", json={"kind": "forward", "target": "127.0.0.1:9"}).json()
        other = _ws(server, f"/api/v1/sessions/{session['id']}/connect", op2)
        assert "opened by user:op1" in _json(other)["error"]
        other.close()


def test_an_operator_leaving_before_the_device_joins_frees_both_sides(server: LiveServer) -> None:
    with _tenant(server) as (c, name, credential):
        control = _ws(server, "/device/v1/tunnel", credential)
        session = c.post(f"/api/v1/devices/{name}/sessions", json={"kind": "shell"}).json()
        operator = _ws(server, f"/api/v1/sessions/{session['id']}/connect", c.headers["authorization"][7:])
        conn = _json(control)["open"]
        operator.close()  # gone before the device dials in
        device = _ws(server, f"/device/v1/tunnel/{conn}", credential)
        with pytest.raises(ConnectionClosed):  # the device's side is let go, not held forever
            while True:
                device.recv(timeout=10)
        shown = _closed(c, session["id"])
        assert shown["close_reason"] == "the operator disconnected" and shown["connections"] == 1
        control.close()


def test_the_sweep_closes_sessions_with_nothing_joined_past_the_idle_timeout(db: Database) -> None:
    """A forward whose CLI was killed, a shell whose connection never came: closed by the minute's sweep."""
    svc = RemoteSessionService(db)
    with db.session() as s:
        t = Tenant(name="acme", remote_access={"enabled": True, "idle_timeout_seconds": 60})
        s.add(t)
        s.flush()
        boot = BootstrapToken(tenant_id=t.id, name="b", token_hash="1" * 64)
        s.add(boot)
        s.flush()
        s.add(Device(tenant_id=t.id, name="d1", compatible="c", enrolled_with=boot.id))
        tid = t.id
    op = Principal(kind="user", name="ada", tenant_id=tid, tenant="acme", role="operator")
    idle = svc.open(op, "d1", "forward", "127.0.0.1:80")
    busy = svc.open(op, "d1", "forward", "127.0.0.1:81")
    with db.session() as s:
        s.get_one(RemoteSession, busy["id"]).live = 1  # a connection joined and still going
    assert svc.sweep(utcnow() + dt.timedelta(seconds=30)) == 0  # not idle long enough yet
    assert svc.sweep(utcnow() + dt.timedelta(seconds=61)) == 1
    assert (svc.show(op, idle["id"])["status"], svc.show(op, idle["id"])["close_reason"]) == ("closed", "idle for more than 60 s")
    assert svc.show(op, busy["id"])["status"] == "open"


def test_a_recorded_shell_keeps_its_output_for_its_owner_and_administrators(server: LiveServer) -> None:
    with _tenant(server) as (c, name, credential):
        assert c.put("/api/v1/remote-access", json={"enabled": True, "record": True}).json()["record"] is True
        c.post("/api/v1/users", json={"name": "op", "role": "operator"}).raise_for_status()
        other = c.post("/api/v1/tokens", json={"name": "op", "user": "op"}).json()["token"]
        session, control, operator, device = _join(server, c, name, credential)
        operator.send(json.dumps({"resize": [100, 30]}))
        device.recv(timeout=10)
        device.send(b"hello \xe2\x82")  # a character split across two messages
        device.send(b"\xac world\r\n")
        operator.recv(timeout=10)
        operator.recv(timeout=10)
        device.send(json.dumps({"exit": 0}))
        assert _json(operator) == {"exit": 0}
        device.close()
        _closed(c, session["id"])
        deadline = time.monotonic() + 10
        while (r := c.get(f"/api/v1/sessions/{session['id']}/recording")).status_code == 404:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-asciicast")
        header, *events = (json.loads(line) for line in r.text.splitlines())
        assert header["version"] == 2 and f"session {session['id']}" == header["title"]
        assert [e[1:] for e in events] == [["r", "100x30"], ["o", "hello "], ["o", "€ world\r\n"]]
        assert c.get(f"/api/v1/sessions/{session['id']}").json()["recording_bytes"] == len(r.content)
        with server.client(other) as o:
            refused = o.get(f"/api/v1/sessions/{session['id']}/recording")
            assert refused.status_code == 403 and "opened by" in refused.json()["message"]
        c.put("/api/v1/remote-access", json={"enabled": True, "record": False}).raise_for_status()
        for ws in (control, operator):
            ws.close()
