"""`bulkhead cra notify` against a live server: add, list, test (to a real local HTTP receiver), deliveries, remove,
every command with --json; bad input exits 2 with the server's message and stores nothing."""

from __future__ import annotations

import json
from typing import Any

from tests.cli.conftest import cli
from tests.live import LiveServer
from tests.server.test_notify_job import Receiver


def ok(srv: LiveServer, token: str, *args: str) -> Any:
    res = cli(srv, token, "cra", "notify", *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_notify_commands(srv: LiveServer) -> None:
    token = srv.tenant(keyring=False)
    receiver = Receiver()
    try:
        sub = ok(srv, token, "add", "--webhook", receiver.url + "/h", "-e", "rollout.paused", "-e", "feed.failing")
        assert sub["secret"] and sub["events"] == ["feed.failing", "rollout.paused"]
        mail = ok(srv, token, "add", "--email", "sec@example.com", "--event", "cra.case.deadline")
        assert mail["secret"] is None
        assert [s["id"] for s in ok(srv, token, "list")] == [sub["id"], mail["id"]]
        d = ok(srv, token, "test", str(sub["id"]))
        assert d["state"] == "delivered" and len(receiver.got) == 1
        [logged] = ok(srv, token, "deliveries", "--subscription", str(sub["id"]))
        assert logged["uid"] == d["uid"]
        plain = cli(srv, token, "cra", "notify", "deliveries")
        assert plain.returncode == 0 and "delivered" in plain.stdout
        assert ok(srv, token, "remove", str(mail["id"])) == {"removed": mail["id"]}
        assert [s["id"] for s in ok(srv, token, "list")] == [sub["id"]]
    finally:
        receiver.httpd.shutdown()
        receiver.httpd.server_close()

    for args, says in [
        (("add", "--webhook", "gopher://x/y", "-e", "rollout.paused"), "http"),
        (("add", "--email", "nobody", "-e", "rollout.paused"), "e-mail"),
        (("add", "--webhook", "https://example.com/h", "-e", "rollout.boom"), "rollout.boom"),
        (("add", "-e", "rollout.paused"), "--webhook"),
        (("remove", "999999"), "subscription"),
    ]:
        res = cli(srv, token, "cra", "notify", *args, "--json")
        assert res.returncode == 2 and says in res.stderr, (args, res.returncode, res.stderr)
    assert len(ok(srv, token, "list")) == 1
