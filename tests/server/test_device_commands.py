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
    for role, token in tokens.items():
        with server.client(token) as u:
            assert u.post("/api/v1/devices/own-1/commands", json={"argv": ["id"]}).status_code == 403
            assert u.get(f"/api/v1/commands/{cmd['id']}").status_code == 403  # the output may hold anything
            listed = u.get("/api/v1/devices/own-1/commands")  # an operator lists the journal reads only
            assert (listed.status_code, listed.json() if role == "operator" else None) == (
                (200, []) if role == "operator" else (403, None)
            )
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
        c.post("/api/v1/devices/bad-1/disable").raise_for_status()
    with server.client(cred) as d:  # a disabled device reports nothing (as on every device route)
        r = d.post(f"/device/v1/commands/{cmd['id']}", json={"status": "running"})
        assert r.status_code in (401, 403) and r.json()["error"]
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


def test_operators_read_a_devices_journal_through_a_fixed_journalctl_command_line(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        cred = _fleet(c, "log-1")["log-1"]
        tokens = {
            role: c.post("/api/v1/tokens", json={"name": role, "user": f"l-{role}", "role": role}).json()["token"]
            for role in ("viewer", "operator")
        }
        secret = c.post("/api/v1/devices/log-1/commands", json={"argv": ["cat", "/etc/shadow"]}).json()
    with server.client(tokens["operator"]) as op:
        r = op.post("/api/v1/devices/log-1/logs", json={"unit": "bulkhead-agent.service", "since": "-2h", "lines": 50})
        assert r.status_code == 201, r.text
        logs = r.json()
        assert logs["kind"] == "logs" and logs["timeout_seconds"] == 60
        assert logs["argv"] == [
            "journalctl", "--no-pager", "--output=short-iso", "--lines=50", "--unit=bulkhead-agent.service", "--since=-2h"
        ]  # fmt: skip
        assert op.post("/api/v1/devices/log-1/logs", json={}).json()["argv"][-1] == "--lines=1000"
        for body, field in (
            ({"unit": "a b"}, "unit"),
            ({"unit": "x;reboot"}, "unit"),
            ({"since": "now; reboot"}, "since"),
            ({"since": "1 hour ago"}, "since"),
            ({"lines": 0}, "lines"),
            ({"lines": 10001}, "lines"),
        ):
            bad = op.post("/api/v1/devices/log-1/logs", json=body)
            assert bad.status_code == 422 and field in bad.text, (body, bad.text)
        # An operator reads the journal reads, not an administrator's commands (whose output may hold anything).
        assert op.get(f"/api/v1/commands/{logs['id']}").status_code == 200
        assert op.get(f"/api/v1/commands/{secret['id']}").status_code == 403
        assert op.delete(f"/api/v1/commands/{secret['id']}").status_code == 403
        assert {x["kind"] for x in op.get("/api/v1/devices/log-1/commands").json()} == {"logs"}
    with server.client(tokens["viewer"]) as v:
        assert v.post("/api/v1/devices/log-1/logs", json={}).status_code == 403
    with server.client(admin) as c:
        assert audited(c, "device.logs", "log-1")
        assert {x["kind"] for x in c.get("/api/v1/devices/log-1/commands").json()} == {"logs", "command"}
    assert [x["argv"][0] for x in state(server, cred).json()["commands"]] == ["cat", "journalctl", "journalctl"]
