"""The CLI's list commands follow the server's pages (X-Next-Cursor) to print every row, or the first --limit."""

from __future__ import annotations

import json
import os

from tests.cli.conftest import cli
from tests.live import LiveServer


def test_list_commands_print_every_page(srv: LiveServer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    token = srv.tenant(keyring=False)
    with srv.client(token) as c:
        for i in range(25):
            body = {"name": f"p-{i:02d}", "compatible": "Test Config", "groups": ["odd" if i % 2 else "even"]}
            c.post("/api/v1/devices", json=body).raise_for_status()
        assert c.get("/api/v1/devices", params={"limit": 10}).headers.get("x-next-cursor")
    monkeypatch.setenv("BULKHEAD_PAGE_SIZE", "10")  # three pages of devices
    assert os.environ["BULKHEAD_PAGE_SIZE"] == "10"
    rows = json.loads(cli(srv, token, "device", "list", "--json").stdout)
    assert [r["name"] for r in rows] == [f"p-{i:02d}" for i in range(25)]
    odd = json.loads(cli(srv, token, "device", "list", "--group", "odd", "--json").stdout)
    assert [r["name"] for r in odd] == [f"p-{i:02d}" for i in range(1, 25, 2)]
    first = json.loads(cli(srv, token, "device", "list", "--limit", "13", "--json").stdout)
    assert [r["name"] for r in first] == [f"p-{i:02d}" for i in range(13)]
    human = cli(srv, token, "device", "list").stdout
    assert "p-00" in human and "p-24" in human
    groups = json.loads(cli(srv, token, "group", "list", "--json").stdout)
    assert {g["name"]: g["devices"] for g in groups} == {"even": 13, "odd": 12}
