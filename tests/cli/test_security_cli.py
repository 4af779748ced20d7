"""`bulkhead security` and `bulkhead release upload --security | release security` against a live server: mark at
upload, policies, postpone (refused past the limit), resume, a device's pending update, run; every command with
--json; bad input exits 2 with the server's message and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.cli.conftest import cli
from tests.live import LiveServer
from tests.server.test_rollouts import GOOD, Dev


def ok(srv: LiveServer, token: str, *args: str) -> Any:
    res = cli(srv, token, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_security_commands(srv: LiveServer) -> None:
    token = srv.tenant()
    rel = ok(srv, token, "release", "upload", str(GOOD), "--security")
    assert rel["security"]["release_id"] == rel["id"]
    assert ok(srv, token, "release", "show", str(rel["id"]))["security"]["marked_by"].startswith("user:")
    with httpx.Client(base_url=srv.url, headers={"authorization": f"Bearer {token}"}) as c:
        dev = Dev(c, "cli-sec-1", "field")
        c.post(
            "/device/v1/reports", headers=dev.h, json={"events": [], "inventory": {"os_version": "2011.03-1"}}
        ).raise_for_status()

    [mark] = ok(srv, token, "security", "list")
    assert mark["version"] == "2011.03-2" and mark["rollout"] is None
    mark = ok(srv, token, "release", "security", str(rel["id"]), "--reason", "CVE-2027-0001")
    assert mark["reason"] == "CVE-2027-0001"
    pol = ok(srv, token, "security", "policy", "set", "--group", "field", "--window-days", "3")
    assert (pol["scope"], pol["group"], pol["mode"], pol["window_days"]) == ("group", "field", "automatic", 3)
    assert ok(srv, token, "security", "policy", "list")["policies"][0]["group"] == "field"
    post = ok(srv, token, "security", "postpone", str(rel["id"]), "--device", "cli-sec-1", "--days", "5", "--reason", "demo")
    assert post["device"] == "cli-sec-1" and post["reason"] == "demo"
    pending = ok(srv, token, "security", "device", "cli-sec-1")["pending"]
    assert pending["state"] == "postponed" and pending["postponed_until"] == post["until"]
    assert ok(srv, token, "security", "run")["placed"] == 0

    for args, says in [
        (("security", "postpone", str(rel["id"]), "--device", "cli-sec-1", "--days", "40", "--reason", "x"), "at most 30 days"),
        (("security", "postpone", str(rel["id"]), "--days", "1", "--reason", "x"), "--device"),
        (("security", "policy", "set", "--group", "field", "--mode", "manual"), "mode"),
        (("security", "policy", "set", "--mode", "opt_out"), "--default"),
        (("security", "resume", "999999"), "postponement 999999 does not exist"),
        (("release", "security", "999999"), "does not exist"),
    ]:
        res = cli(srv, token, *args, "--json")
        assert res.returncode == 2 and says in res.stderr, (args, res.returncode, res.stderr)
    [kept] = ok(srv, token, "security", "postponements")
    assert kept["until"] == post["until"]

    assert ok(srv, token, "security", "resume", str(post["id"])) == {"ended": post["id"]}
    assert ok(srv, token, "security", "postponements", "--release", str(rel["id"])) == []
    assert ok(srv, token, "security", "policy", "clear", "--group", "field") == {"cleared": "field"}
    plain = cli(srv, token, "security", "policy", "list")
    assert plain.returncode == 0 and "automatic" in plain.stdout
    assert ok(srv, token, "release", "security", str(rel["id"]), "--unset") == {"release_id": rel["id"], "security": False}
    assert ok(srv, token, "security", "list") == []
