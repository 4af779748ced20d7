"""`bulkhead rollout create` against a live server: an app version or a release, and the user errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import cli
from tests.live import LiveServer


def test_rollout_create_with_an_app_version(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    with srv.client(token) as c:
        r = c.post("/api/v1/apps", json={"name": "shop", "version": "2", "containers": [{"name": "m", "image": "shop:2"}]})
        r.raise_for_status()
    res = cli(srv, token, "rollout", "create", "shop-2", "--app", "shop:2", "--group", "line", "--json")
    assert res.returncode == 0, res.stderr
    ro = json.loads(res.stdout)
    assert ro["subject"] == "app shop:2" and ro["release_id"] is None and ro["target"]["groups"] == ["line"]
    listed = cli(srv, token, "rollout", "list")
    assert listed.returncode == 0 and "app shop:2" in listed.stdout

    for args, message in (
        (("--app", "shop"), "NAME:VERSION"),
        (("--app", "shop:9"), "app 'shop' version '9' does not exist"),
        (("--app", "shop:2", "--release", "1"), "either --release"),
        ((), "either --release"),
    ):
        res = cli(srv, token, "rollout", "create", "bad", *args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    with srv.client(token) as c:
        assert [r["name"] for r in c.get("/api/v1/rollouts").json()] == ["shop-2"]
