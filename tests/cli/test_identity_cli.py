"""`bulkhead token list|revoke`, `user list|delete` and `device reset-credential|disable|enable|delete` against a live server."""

from __future__ import annotations

import json
from typing import Any

from tests.cli.conftest import cli
from tests.live import LiveServer


def test_identity_and_lifecycle_commands(srv: LiveServer) -> None:
    token = srv.tenant()
    with srv.client(token) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
        r = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": "cli-1", "compatible": "Test Config"})
        r.raise_for_status()
        c.post("/api/v1/tokens", json={"name": "ci", "user": "ci-bot", "role": "operator"}).raise_for_status()

    def ok(*args: str) -> Any:
        res = cli(srv, token, *args, "--json")
        assert res.returncode == 0, (args, res.stderr)
        return json.loads(res.stdout)

    rows = ok("token", "list")
    assert isinstance(rows, list) and {r["name"] for r in rows} == {"initial-admin", "ci"}
    ci_id = next(r["id"] for r in rows if r["name"] == "ci")
    assert ok("token", "revoke", str(ci_id)) == {**next(r for r in rows if r["name"] == "ci"), "revoked": True}
    assert ok("user", "delete", "ci-bot") == {"name": "ci-bot", "role": "operator", "deleted": True, "tokens_revoked": 1}
    assert [u["name"] for u in ok("user", "list")] == ["admin"]

    reset = ok("device", "reset-credential", "cli-1")
    assert isinstance(reset, dict) and reset["reenroll_allowed"] is True and reset["credential_epoch"] == 1
    assert ok("device", "disable", "cli-1")["status"] == "disabled"
    assert ok("device", "enable", "cli-1")["status"] == "active"
    assert ok("device", "delete", "cli-1")["deleted"] is True

    for args, message in (
        (("user", "delete", "admin"), "last admin"),
        (("device", "disable", "cli-1"), "does not exist"),
        (("token", "revoke", "99999"), "does not exist"),
    ):
        res = cli(srv, token, *args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
