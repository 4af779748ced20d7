"""Rollouts over the management API, driven by devices speaking the agent protocol over real HTTP."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import RAUC_DATA
from tests.server.conftest import LiveServer

GOOD = RAUC_DATA / "good-verity-bundle.raucb"
_seq = itertools.count(1)


class Dev:
    def __init__(self, c: httpx.Client, name: str, group: str) -> None:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": name, "group": group}).json()
        r = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": name, "compatible": "Test Config"})
        r.raise_for_status()
        self.c, self.name = c, name
        self.h = {"authorization": f"Bearer {r.json()['credential']}"}

    def state(self) -> dict[str, Any]:
        r = self.c.get("/device/v1/state", headers=self.h)
        r.raise_for_status()
        return r.json()

    def release(self) -> dict[str, Any] | None:
        rel: dict[str, Any] | None = self.state()["desired"]["release"]
        return rel

    def report(self, phase: str, release_id: int, **details: Any) -> None:
        ev = {"seq": next(_seq), "kind": "update", "phase": phase, "release_id": release_id, "details": details}
        self.c.post("/device/v1/reports", headers=self.h, json={"events": [ev]}).raise_for_status()


def _wait(cond: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _setup(server: LiveServer) -> tuple[httpx.Client, int]:
    c = server.client(server.tenant())
    r = c.post("/api/v1/releases", content=GOOD.read_bytes())
    assert r.status_code == 201, r.text
    return c, r.json()["id"]


def test_two_phase_rollout_pauses_on_errors_resumes_retries_and_cancels(server: LiveServer) -> None:
    c, rel = _setup(server)
    canary = Dev(c, "canary-1", "canary")
    line = [Dev(c, f"line-{i}", "line") for i in range(3)]
    bad = [
        ({"name": "x", "release_id": 999999}, 404, "does not exist"),
        ({"name": "x", "release_id": rel, "type": "eventually"}, 400, "type must be one of"),
        ({"name": "x", "release_id": rel, "window": {"cron": "nightly", "duration_minutes": 5}}, 400, "5-field cron"),
        ({"name": "x", "release_id": rel, "phases": [{"percent": 70}, {"percent": 70}]}, 400, "more than 100"),
        ({"name": "x", "release_id": rel, "target": {"compatible": "Other"}}, 400, "differs from the release"),
        ({"name": "x", "release_id": rel, "start_at": "tomorrow"}, 400, "ISO 8601"),
    ]
    for body, status, message in bad:
        r = c.post("/api/v1/rollouts", json=body)
        assert r.status_code == status and message in r.json()["message"], (body, r.text)
    assert c.get("/api/v1/rollouts").json() == []  # nothing half-created

    body = {
        "name": "r1",
        "release_id": rel,
        "target": {"groups": ["canary", "line"]},
        "phases": [{"group": "canary", "error_threshold": 50}, {"group": "line", "error_threshold": 50}],
    }
    r = c.post("/api/v1/rollouts", json=body)
    assert r.status_code == 201, r.text
    ro = r.json()
    assert ro["status"] == "running" and [p["devices"] for p in ro["phases"]] == [1, 0]
    assert c.post("/api/v1/rollouts", json=body).status_code == 409
    offered = canary.release()
    assert offered is not None and offered["id"] == rel and offered["action"]["install"] is True
    assert offered["action"]["type"] == "soft"
    assert line[0].release() is None  # phase 2 has not started

    canary.report("downloading", rel, progress=50)
    canary.report("installing", rel)
    canary.report("success", rel)
    _wait(lambda: c.get("/api/v1/rollouts/r1").json()["current_phase"] == 1, "phase 2 to start")
    assert all(d.release() is not None for d in line)

    line[0].report("rolled_back", rel, reason="health check failed: app did not start")
    line[1].report("failure", rel, reason="install failed")
    ro = _wait(lambda: (x := c.get("/api/v1/rollouts/r1").json())["status"] == "paused" and x, "the error threshold to pause")
    assert "2 of 3 devices failed in phase 'group line'" in ro["pause_reason"]
    assert ro["phases"][1]["counts"] == {"rolled_back": 1, "failure": 1, "scheduled": 1}
    acts = {a["device"]: a for a in c.get("/api/v1/rollouts/r1/actions").json()}
    assert acts["line-0"]["history"][-1]["message"] == "health check failed: app did not start"
    assert acts["canary-1"]["status"] == "success" and not acts["canary-1"]["active"]

    assert c.post("/api/v1/rollouts/r1/pause").status_code == 409
    assert c.post("/api/v1/rollouts/r1/resume").json()["status"] == "running"
    line[2].report("success", rel)
    _wait(lambda: c.get("/api/v1/rollouts/r1").json()["status"] == "finished", "the rollout to finish")

    retried = c.post("/api/v1/rollouts/r1/retry").json()
    assert retried["retried"] == 2 and retried["status"] == "running"
    assert line[0].release() is not None and line[0].release()["action"]["id"] != acts["line-0"]["id"]  # type: ignore[index]
    line[0].report("downloading", rel)
    ro = c.post("/api/v1/rollouts/r1/cancel").json()
    assert ro["status"] == "canceled"
    acts2 = {a["device"]: a for a in c.get("/api/v1/rollouts/r1/actions", params={"status": "canceling"}).json()}
    assert set(acts2) == {"line-0"}  # started: the device must confirm
    assert line[1].release() is None  # not started: canceled outright
    line[0].report("canceled", rel)
    assert c.get("/api/v1/rollouts/r1/actions", params={"status": "canceling"}).json() == []
    audit = [e["action"] for e in c.get("/api/v1/audit").json() if e["action"].startswith("rollout.")]
    for verb in ("create", "phase", "pause", "resume", "finish", "retry", "cancel"):
        assert f"rollout.{verb}" in audit, (verb, audit)
    gone = c.delete(f"/api/v1/releases/{rel}")
    assert gone.status_code == 409 and "used by rollout(s) r1" in gone.json()["message"]
    assert c.get(f"/api/v1/releases/{rel}").status_code == 200
    c.close()


def test_download_only_windows_late_joiners_and_approval(server: LiveServer) -> None:
    c, rel = _setup(server)
    a = Dev(c, "w-1", "night")
    r = c.put("/api/v1/groups/night/window", json={"window": {"cron": "0 0 29 2 *", "duration_minutes": 30}})
    assert r.status_code == 200, r.text
    assert c.put("/api/v1/groups/night/window", json={"window": {"cron": "0 0 29 2 *"}}).status_code == 400
    assert c.post("/api/v1/rollouts", json={"name": "w", "release_id": rel, "target": {"groups": ["night"]}}).status_code == 201
    offered = a.release()
    assert offered is not None and offered["action"]["install"] is False
    assert offered["action"]["window_opens_at"].startswith("2028-02-29T00:00")
    etag = c.get("/device/v1/state", headers=a.h).headers["etag"]
    c.put("/api/v1/groups/night/window", json={"window": {"cron": "* * * * *", "duration_minutes": 5}}).raise_for_status()
    opened = c.get("/device/v1/state", headers={**a.h, "if-none-match": etag})
    assert opened.status_code == 200 and opened.json()["desired"]["release"]["action"]["install"] is True

    # A device that joins the target later gets its action without anyone touching the rollout.
    late = Dev(c, "w-2", "night")
    _wait(lambda: late.release() is not None, "the late joiner's action")

    b = Dev(c, "dl-1", "depot")
    r = c.post(
        "/api/v1/rollouts",
        json={
            "name": "d",
            "release_id": rel,
            "type": "download_only",
            "target": {"groups": ["depot"]},
            "requires_approval": True,
        },
    )
    assert r.json()["status"] == "waiting_approval" and b.release() is None
    assert c.post("/api/v1/rollouts/d/approve").json()["status"] == "running"
    offered = b.release()
    assert offered is not None and offered["action"] == {
        "id": offered["action"]["id"],
        "type": "download_only",
        "install": False,
        "window_opens_at": None,
    }
    b.report("downloading", rel)
    b.report("downloaded", rel)
    act = _wait(lambda: c.get("/api/v1/rollouts/d/actions").json()[0], "the action")
    assert act["status"] == "downloaded" and act["active"] is False
    _wait(lambda: c.get("/api/v1/rollouts/d").json()["status"] == "finished", "the download-only rollout to finish")
    assert b.release() is None
    c.close()


def test_scheduled_start(server: LiveServer) -> None:
    c, rel = _setup(server)
    d = Dev(c, "s-1", "sched")
    start = time.time() + 3
    import datetime as dt

    at = dt.datetime.fromtimestamp(start, dt.UTC).isoformat()
    r = c.post("/api/v1/rollouts", json={"name": "s", "release_id": rel, "target": {"groups": ["sched"]}, "start_at": at})
    assert r.json()["status"] == "scheduled" and d.release() is None
    _wait(lambda: d.release() is not None, "the scheduled start", timeout=30)
    assert time.time() >= start - 0.5
    c.close()
