"""Remote commands (services/device_commands.py, api/commands.py): administrators only and audited; pending in the
device's state answer until its agent starts it; its report moves it along the one transition table; bad input is
refused with what to do, and changes nothing."""

from __future__ import annotations

import httpx

from tests.server.conftest import LiveServer
from tests.server.test_identity import audited, bootstrap, enroll, state


def _fleet(c: httpx.Client, *names: str, group: str | None = None) -> dict[str, str]:
    token = bootstrap(c, "cmd", **({"group": group} if group else {}))
    return {n: enroll(c, token, n).json()["credential"] for n in names}


def test_a_command_reaches_the_device_once_and_its_result_is_kept(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        cred = _fleet(c, "pump-1")["pump-1"]
        r = c.post("/api/v1/devices/pump-1/commands", json={"argv": ["sh", "-c", "echo hi; exit 3"], "timeout_seconds": 30})
        assert r.status_code == 201, r.text
        cmd = r.json()
        assert cmd["status"] == "pending" and cmd["device"] == "pump-1" and cmd["requested_by"].startswith("user:")
        assert audited(c, "device.command", "pump-1")
        assert state(server, cred).json()["commands"] == [
            {"id": cmd["id"], "argv": ["sh", "-c", "echo hi; exit 3"], "timeout_seconds": 30}
        ]
        with server.client(cred) as d:
            assert d.post(f"/device/v1/commands/{cmd['id']}", json={"status": "running"}).json()["status"] == "running"
            assert "commands" not in state(server, cred).json()  # started: never handed out again
            assert d.post(f"/device/v1/commands/{cmd['id']}", json={"status": "running"}).status_code == 200  # a repeat
            done = {"status": "exited", "exit_code": 3, "output": "hi\n"}
            assert d.post(f"/device/v1/commands/{cmd['id']}", json=done).json()["status"] == "exited"
            again = d.post(f"/device/v1/commands/{cmd['id']}", json={"status": "failed", "output": "late"})
            assert again.status_code == 409 and "exited" in again.json()["message"]
        shown = c.get(f"/api/v1/commands/{cmd['id']}").json()
        assert (shown["status"], shown["exit_code"], shown["output"]) == ("exited", 3, "hi\n")
        assert shown["started_at"] and shown["finished_at"] and shown["output_truncated"] is False
        assert [x["id"] for x in c.get("/api/v1/devices/pump-1/commands").json()] == [cmd["id"]]
        # Withdrawn before it started: not in the state answer; a started or finished one cannot be withdrawn.
        second = c.post("/api/v1/devices/pump-1/commands", json={"argv": ["reboot"]}).json()
        assert second["timeout_seconds"] == 60 and state(server, cred).json()["commands"][0]["id"] == second["id"]
        assert c.delete(f"/api/v1/commands/{second['id']}").json()["status"] == "canceled"
        assert "commands" not in state(server, cred).json()
        assert c.delete(f"/api/v1/commands/{cmd['id']}").status_code == 409
        with server.client(cred) as d:
            assert d.post(f"/device/v1/commands/{second['id']}", json={"status": "running"}).status_code == 409
        assert audited(c, "device.command_cancel", "pump-1")


def test_a_group_command_goes_to_each_active_agent_device_of_the_group(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        c.post("/api/v1/groups", json={"name": "line-2"}).raise_for_status()
        creds = _fleet(c, "g-1", "g-2", "g-3", group="line-2")
        c.post("/api/v1/devices/g-3/disable").raise_for_status()
        r = c.post("/api/v1/groups/line-2/commands", json={"argv": ["uptime"]})
        assert r.status_code == 201, r.text
        assert sorted(x["device"] for x in r.json()) == ["g-1", "g-2"]  # the disabled one is left out
        assert all(state(server, creds[n]).json()["commands"][0]["argv"] == ["uptime"] for n in ("g-1", "g-2"))
        assert audited(c, "group.command", "line-2")
        assert c.post("/api/v1/groups/nope/commands", json={"argv": ["uptime"]}).status_code == 404


def test_only_administrators_run_commands_and_devices_report_only_their_own(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        creds = _fleet(c, "own-1", "own-2")
        cmd = c.post("/api/v1/devices/own-1/commands", json={"argv": ["id"]}).json()
        tokens = {
            role: c.post("/api/v1/tokens", json={"name": role, "user": f"u-{role}", "role": role}).json()["token"]
            for role in ("viewer", "operator")
        }
    for token in tokens.values():
        with server.client(token) as u:
            assert u.post("/api/v1/devices/own-1/commands", json={"argv": ["id"]}).status_code == 403
            assert u.get(f"/api/v1/commands/{cmd['id']}").status_code == 403  # the output may hold anything
            assert u.get("/api/v1/devices/own-1/commands").status_code == 403
    with server.client(creds["own-2"]) as other:
        r = other.post(f"/device/v1/commands/{cmd['id']}", json={"status": "exited", "exit_code": 0})
        assert r.status_code == 404
        assert other.post("/api/v1/devices/own-1/commands", json={"argv": ["id"]}).status_code == 403
    other_tenant = server.tenant()
    with server.client(other_tenant) as o:
        assert o.get(f"/api/v1/commands/{cmd['id']}").status_code == 404
        assert o.post("/api/v1/devices/own-1/commands", json={"argv": ["id"]}).status_code == 404


def test_bad_command_lines_and_reports_are_refused_saying_why(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        cred = _fleet(c, "bad-1")["bad-1"]
        for body, words in (
            ({"argv": []}, "at least 1"),
            ({"argv": [" "]}, "argv[0]"),
            ({"argv": ["sh", "a\0b"]}, "NUL"),  # the server's JSON reader refuses it first (400)
            ({"argv": ["x"] * 65}, "at most 64"),
            ({"argv": ["echo", "x" * 17000]}, "put a script in a file"),
            ({"argv": ["id"], "timeout_seconds": 0}, "greater than or equal to 1"),
            ({"argv": ["id"], "timeout_seconds": 3601}, "less than or equal to 3600"),
            ({"argv": "id"}, "valid list"),
        ):
            r = c.post("/api/v1/devices/bad-1/commands", json=body)
            assert r.status_code == (400 if words == "NUL" else 422) and words in r.text, (body, r.text)
        assert c.get("/api/v1/devices/bad-1/commands").json() == []  # nothing was queued
        provisioned = c.post("/api/v1/devices", json={"name": "ddi-1", "compatible": "Test Config"})
        assert provisioned.status_code == 201
        r = c.post("/api/v1/devices/ddi-1/commands", json={"argv": ["id"]})
        assert r.status_code == 409 and "agent" in r.json()["message"]
        assert c.post("/api/v1/devices/absent/commands", json={"argv": ["id"]}).status_code == 404
        cmd = c.post("/api/v1/devices/bad-1/commands", json={"argv": ["id"]}).json()
    with server.client(cred) as d:
        for body in (
            {"status": "pending"},
            {"status": "canceled"},
            {"status": "exited", "exit_code": 999},
            {"status": "exited", "output": "x" * 70000},
        ):
            r = d.post(f"/device/v1/commands/{cmd['id']}", json=body)
            assert r.status_code == 422, (body, r.text)
        assert d.post("/device/v1/commands/999999", json={"status": "running"}).status_code == 404
    with server.client(admin) as c:
        assert c.get(f"/api/v1/commands/{cmd['id']}").json()["status"] == "pending"


def test_a_device_holds_at_most_twenty_pending_commands(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        _fleet(c, "busy-1")
        for _ in range(20):
            c.post("/api/v1/devices/busy-1/commands", json={"argv": ["true"]}).raise_for_status()
        r = c.post("/api/v1/devices/busy-1/commands", json={"argv": ["true"]})
        assert r.status_code == 409 and "20 commands pending" in r.json()["message"]
        page = c.get("/api/v1/devices/busy-1/commands", params={"limit": 5})
        assert len(page.json()) == 5 and page.headers.get("x-next-cursor")
