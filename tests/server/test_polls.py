"""The poll path answers from memory, and every server process sees a change within about a second."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import RAUC_DATA
from tests.live import live_server


def _poll(url: str, path: str, auth: str, etag: str | None = None) -> httpx.Response:
    headers = {"authorization": auth, **({"if-none-match": etag} if etag else {})}
    with httpx.Client(base_url=url) as c:  # a new connection each time: either worker may answer
        return c.get(path, headers=headers)


def _all_agree(url: str, path: str, auth: str, check: Callable[[Any], bool], deadline: float) -> float:
    """Seconds until the last poll that did not pass `check`, once 20 polls in a row (new connections, so both
    workers) have passed it. The 20 polls themselves may take longer on a loaded machine: the deadline is about
    when the change reached every worker, not about how fast this client polls."""
    start, streak = time.monotonic(), 0
    last_stale = start
    while streak < 20:
        assert time.monotonic() < start + deadline + 60, "the polls did not pass 20 times in a row within a minute"
        sent = time.monotonic()
        r = _poll(url, path, auth)
        assert r.status_code == 200, r.text
        if check(r.json()):
            streak += 1
        else:
            streak, last_stale = 0, sent
            assert sent < start + deadline, f"a worker still answered the old state {sent - start:.1f} s after the change"
    return last_stale - start


def test_changes_reach_cached_answers_in_every_worker(tmp_path: Path) -> None:
    with live_server(tmp_path / "srv", workers=2) as srv, srv.client(srv.tenant()) as c:
        tenant = c.get("/api/v1/tenant").json()["name"]
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b", "requires_approval": True}).json()
        enrolled = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": "p1", "compatible": "Test Config"})
        auth = f"Bearer {enrolled.json()['credential']}"
        assert _poll(srv.url, "/device/v1/state", auth).status_code == 403  # pending approval
        c.post("/api/v1/devices/p1/approve").raise_for_status()
        _all_agree(srv.url, "/device/v1/state", auth, lambda b: b["device"]["tags"] == [], 3)
        first = _poll(srv.url, "/device/v1/state", auth)
        assert _poll(srv.url, "/device/v1/state", auth, first.headers["etag"]).status_code == 304

        c.post("/api/v1/devices/p1/tags", json={"add": ["canary"]}).raise_for_status()
        _all_agree(srv.url, "/device/v1/state", auth, lambda b: b["device"]["tags"] == ["canary"], 3)
        assert _poll(srv.url, "/device/v1/state", auth, first.headers["etag"]).status_code == 200

        # The DDI root of the same device: a rollout's action appears in both workers.
        ddi = f"/{tenant}/controller/v1/p1"
        token = f"TargetToken {enrolled.json()['credential']}"
        _all_agree(srv.url, ddi, token, lambda b: "deploymentBase" not in b.get("_links", {}), 3)
        rel = c.post("/api/v1/releases", content=(RAUC_DATA / "good-verity-bundle.raucb").read_bytes()).json()
        body = {"name": "r", "release_id": rel["id"], "type": "forced", "target": {"tags": ["canary"]}}
        c.post("/api/v1/rollouts", json=body).raise_for_status()
        _all_agree(srv.url, ddi, token, lambda b: "deploymentBase" in b.get("_links", {}), 5)
        _all_agree(srv.url, "/device/v1/state", auth, lambda b: b["desired"]["release"]["version"] == "2011.03-2", 3)
