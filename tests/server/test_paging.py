"""Every list of the management API is paged: `?limit=`, `?cursor=`, `X-Next-Cursor` and `Link: rel="next"`."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.conftest import RAUC_DATA
from tests.server.conftest import LiveServer

GOOD = RAUC_DATA / "good-verity-bundle.raucb"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def _provision(c: httpx.Client, name: str, groups: list[str] | None = None, compatible: str = "Test Config") -> int:
    r = c.post("/api/v1/devices", json={"name": name, "compatible": compatible, "groups": groups or []})
    assert r.status_code == 201, r.text
    return int(r.json()["device_id"])


def _walk(c: httpx.Client, path: str, params: dict[str, Any] | None = None, between: Any = None) -> tuple[list[Any], int]:
    """Every row of a list, page by page (following Link and X-Next-Cursor); and how many pages it took."""
    rows: list[Any] = []
    pages = 0
    r = c.get(path, params=params)
    while True:
        assert r.status_code == 200, r.text
        assert isinstance(r.json(), list)
        rows += r.json()
        pages += 1
        cursor = r.headers.get("x-next-cursor")
        link = r.headers.get("link")
        if cursor is None:
            assert link is None
            return rows, pages
        assert link is not None and link.endswith('; rel="next"') and f"cursor={cursor}" in link
        if between is not None:
            between(pages)
        r = c.get(link[1 : link.index(">")])  # the Link URL: the same query with the next cursor


def _is_error(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error", "message"} and words in body["message"], body


def test_device_pages_concatenate_while_devices_are_added(server: LiveServer) -> None:
    with server.client(server.tenant(keyring=False)) as c:
        first = [_provision(c, f"d-{i:03d}") for i in range(230)]
        added: list[int] = []

        def add(page: int) -> None:  # new devices between page reads: none repeats, none is skipped
            added.append(_provision(c, f"late-{page}"))

        rows, pages = _walk(c, "/api/v1/devices", {"limit": 50}, between=add)
        ids = [d["id"] for d in rows]
        assert pages >= 5
        assert ids == sorted(set(ids)), "pages repeat or reorder rows"
        assert set(first) <= set(ids) and set(added) <= set(ids)
        assert all("reported" not in d and "desired" not in d for d in rows), "list rows carry no inventory"
        assert {"name", "status", "tags", "groups", "os_version", "update", "last_seen"} <= set(rows[0])
        # The default page is 100 rows; the last page has neither header.
        r = c.get("/api/v1/devices")
        assert len(r.json()) == 100 and r.headers.get("x-next-cursor")
        last = c.get("/api/v1/devices", params={"limit": 1000})
        assert len(last.json()) == len(ids) and "x-next-cursor" not in last.headers and "link" not in last.headers


def test_device_filters_run_in_the_database_across_pages(server: LiveServer) -> None:
    with server.client(server.tenant(keyring=False)) as c:
        for i in range(120):
            _provision(
                c, f"f-{i:03d}", groups=["even"] if i % 2 == 0 else ["odd", "x"], compatible="board-a" if i < 30 else "board-b"
            )
        for i in range(0, 120, 3):
            c.post(f"/api/v1/devices/f-{i:03d}/tags", json={"add": ["lab", f"rack-{i % 2}"]}).raise_for_status()

        def names(params: dict[str, Any]) -> list[str]:
            rows, _ = _walk(c, "/api/v1/devices", {"limit": 7, **params})
            return [d["name"] for d in rows]

        every = [f"f-{i:03d}" for i in range(120)]
        assert names({"tag": "lab"}) == [n for i, n in enumerate(every) if i % 3 == 0]
        assert names({"tag": ["lab", "rack-1"]}) == [n for i, n in enumerate(every) if i % 3 == 0 and i % 2 == 1]
        assert names({"group": "even"}) == every[::2]
        assert names({"group": "x", "compatible": "board-a"}) == [n for i, n in enumerate(every) if i % 2 and i < 30]
        assert names({"name_prefix": "f-10"}) == [f"f-{i}" for i in range(100, 110)]
        assert names({"name_prefix": "f_"}) == []  # '_' is not a LIKE wildcard here
        assert names({"tag": "nobody-has-it"}) == []
        assert names({"status": "active", "tag": "lab", "group": "odd"}) == [n for i, n in enumerate(every) if i % 6 == 3]
        assert names({"seen_after": "2000-01-01T00:00:00Z"}) == []  # provisioned devices were never seen
        assert len(names({"seen_before": "2099-01-01T00:00:00Z"})) == 0
        _is_error(c.get("/api/v1/devices", params={"seen_after": "yesterday"}), 400, "seen_after")
        # Groups are counted in SQL and paged by name.
        groups, pages = _walk(c, "/api/v1/groups", {"limit": 1})
        assert [(g["name"], g["devices"]) for g in groups] == [("even", 60), ("odd", 60), ("x", 60)] and pages == 3
        assert len(c.get("/api/v1/groups/even").json()["device_names"]) == 60


def test_limits_and_cursors_out_of_range_are_json_errors(server: LiveServer) -> None:
    with server.client(server.tenant(keyring=False)) as c:
        for i in range(3):
            _provision(c, f"c-{i}")
        for limit in ("0", "1001", "-5", "99999999999999999999"):
            _is_error(c.get("/api/v1/devices", params={"limit": limit}), 400, "limit must be 1-1000")
        _is_error(c.get("/api/v1/devices", params={"limit": "many"}), 422, "limit")
        cursor = c.get("/api/v1/devices", params={"limit": 1}).headers["x-next-cursor"]
        assert len(c.get("/api/v1/devices", params={"limit": 1, "cursor": cursor}).json()) == 1
        forged = base64.urlsafe_b64encode(json.dumps(["x", 1]).encode()).decode().rstrip("=")
        wrong_type = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        wrong_type[1] = "1"
        huge = [wrong_type[0], 2**70]
        for bad in (
            "!!!",
            "bm90IGpzb24",
            forged,
            *(base64.urlsafe_b64encode(json.dumps(v).encode()).decode() for v in (wrong_type, huge)),
        ):
            _is_error(c.get("/api/v1/devices", params={"cursor": bad}), 400, "start again without a cursor")
        # A cursor of another list is refused, not read as this list's key.
        _is_error(c.get("/api/v1/users", params={"cursor": cursor}), 400, "another list")
        _is_error(c.get("/api/v1/audit", params={"cursor": cursor}), 400, "without a cursor")


def test_every_list_is_paged(server: LiveServer) -> None:
    token = server.tenant()
    with server.client(token) as c:
        for i in range(3):
            c.post("/api/v1/users", json={"name": f"u{i}", "role": "viewer"}).raise_for_status()
            c.post("/api/v1/tokens", json={"name": f"t{i}", "user": f"u{i}"}).raise_for_status()
            c.post("/api/v1/bootstrap-tokens", json={"name": f"b{i}"}).raise_for_status()
            c.post(
                "/api/v1/apps",
                json={"name": "web", "version": str(i), "containers": [{"name": "w", "image": f"r.io/w@{DIGEST}"}]},
            )
            c.post("/api/v1/groups", json={"name": f"g{i}"}).raise_for_status()
        with GOOD.open("rb") as f:
            rel = c.post("/api/v1/releases", content=f.read(), headers={"content-type": "application/octet-stream"}).json()
        for i in range(5):
            _provision(c, f"r-{i}", groups=["ring"])
        for i in range(3):
            c.post("/api/v1/rollouts", json={"name": f"ro{i}", "release_id": rel["id"], "target": {"groups": ["ring"]}})
        lists = {
            "/api/v1/users": 4,
            "/api/v1/tokens": 4,
            "/api/v1/bootstrap-tokens": 3,
            "/api/v1/apps": 3,
            "/api/v1/groups": 4,
            "/api/v1/rollouts": 3,
            "/api/v1/rollouts/ro0/actions": 5,
            "/api/v1/devices": 5,
        }
        for path, n in lists.items():
            rows, pages = _walk(c, path, {"limit": 2})
            assert len(rows) >= n and pages == -(-len(rows) // 2), path
        audit, _ = _walk(c, "/api/v1/audit", {"limit": 4})
        ids_seen = [json.dumps(a, sort_keys=True) for a in audit]
        assert len(ids_seen) == len(set(ids_seen)) >= 20
        assert _walk(c, f"/api/v1/releases/{rel['id']}/deltas", {"limit": 2})[0] == []
        assert len(_walk(c, "/api/v1/releases", {"limit": 1})[0]) == 1
    with server.client(server.admin) as c:
        tenants, pages = _walk(c, "/api/v1/tenants", {"limit": 1})
        assert len(tenants) == pages >= 1


def test_device_events_are_paged_newest_first(server: LiveServer) -> None:
    with server.client(server.tenant(keyring=False)) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "ev"}).json()
        r = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": "ev-1", "compatible": "Test Config"})
        dev = {"authorization": f"Bearer {r.json()['credential']}"}
        for start in range(1, 301, 100):
            ev = [{"seq": s, "kind": "update", "phase": "downloading", "details": {}} for s in range(start, start + 100)]
            c.post("/device/v1/reports", json={"events": ev}, headers=dev).raise_for_status()
        rows, pages = _walk(c, "/api/v1/devices/ev-1/events", {"limit": 64})
        assert [e["seq"] for e in rows] == list(range(300, 0, -1)) and pages == 5


@pytest.mark.parametrize("path", ["/api/v1/devices", "/api/v1/rollouts", "/api/v1/audit"])
def test_paging_headers_are_documented(server: LiveServer, path: str) -> None:
    doc = httpx.get(server.url + "/openapi.json").json()
    op = doc["paths"][path]["get"]
    assert {"X-Next-Cursor", "Link"} <= set(op["responses"]["200"]["headers"])
    params = {p["name"]: p for p in op["parameters"]}
    assert {"limit", "cursor"} <= set(params)
    assert params["limit"]["schema"]["minimum"] == 1 and params["limit"]["schema"]["maximum"] == 1000
