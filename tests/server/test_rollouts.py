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

    def report_app(self, phase: str, app: str, version: str, error: str | None = None) -> None:
        ev = {"seq": next(_seq), "kind": "app", "phase": phase, "details": {"app": app, "version": version, "error": error}}
        self.c.post("/device/v1/reports", headers=self.h, json={"events": [ev]}).raise_for_status()

    def apps(self) -> tuple[dict[str, str], dict[str, str]]:
        """What the device must run (app -> version) and what it may only pull (app -> version)."""
        desired = self.state()["desired"]
        return (
            {a["name"]: a["version"] for a in desired["apps"]},
            {a["name"]: a["version"] for a in desired.get("prefetch", [])},
        )


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
    assert offered["update_lock_max_seconds"] == 3600, "an application's update lock may delay it by the server's 60 min"
    assert line[0].release() is None  # phase 2 has not started

    canary.report("downloading", rel, progress=50)
    canary.report("installing", rel)
    canary.report("success", rel)
    _wait(lambda: c.get("/api/v1/rollouts/r1").json()["current_phase"] == 1, "phase 2 to start")
    kept = canary.release()  # the action closed; what it installed stays the device's desired release
    assert kept is not None and kept["id"] == rel and kept["action"] is None
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
    # the two devices that succeeded keep the release as their own desired release
    assert gone.status_code == 409 and "desired release of 2 device(s)" in gone.json()["message"]
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


def _app(c: httpx.Client, version: str) -> None:
    r = c.post("/api/v1/apps", json={"name": "web", "version": version, "containers": [{"name": "m", "image": f"web:{version}"}]})
    assert r.status_code == 201, r.text


def test_app_version_rollout_phases_threshold_window_download_only_and_cancel(server: LiveServer) -> None:
    c = server.client(server.tenant())
    for v in ("1", "2", "3"):
        _app(c, v)
    for group in ("canary", "shop"):
        c.patch(f"/api/v1/groups/{group}/desired", json={"apps": {"web": "1"}}).raise_for_status()
    canary, line = Dev(c, "a-canary", "canary"), [Dev(c, f"a-line-{i}", "shop") for i in range(2)]
    assert canary.apps() == ({"web": "1"}, {})

    bad = [
        ({"name": "x", "app": {"name": "web", "version": "9"}}, 404, "app 'web' version '9' does not exist"),
        ({"name": "x", "app": {"name": "web", "version": "2"}, "release_id": 1}, 400, "exactly one of release_id"),
        ({"name": "x"}, 400, "exactly one of release_id"),
    ]
    for body, status, message in bad:
        r = c.post("/api/v1/rollouts", json=body)
        assert r.status_code == status and message in r.json()["message"], (body, r.text)

    body = {
        "name": "web2",
        "app": {"name": "web", "version": "2"},
        "target": {"groups": ["canary", "shop"]},
        "phases": [{"group": "canary", "error_threshold": 0}, {"group": "shop", "error_threshold": 0}],
    }
    ro = c.post("/api/v1/rollouts", json=body).json()
    assert ro["app"]["name"] == "web" and ro["app"]["version"] == "2" and ro["subject"] == "app web:2"
    assert ro["release_id"] is None and [p["devices"] for p in ro["phases"]] == [1, 0]
    first, rest = canary, line
    assert first.apps() == ({"web": "2"}, {})
    assert all(d.apps() == ({"web": "1"}, {}) for d in rest)  # phase 2 waits
    offered = next(a for a in first.state()["desired"]["apps"] if a["name"] == "web")
    assert offered["action"]["install"] is True and offered["containers"][0]["image"] == "web:2"

    first.report_app("applied", "web", "1")  # the old version's report changes nothing
    assert c.get("/api/v1/rollouts/web2").json()["current_phase"] == 0
    first.report_app("applied", "web", "2")
    _wait(lambda: c.get("/api/v1/rollouts/web2").json()["current_phase"] == 1, "phase 2 of the app rollout")
    assert first.apps() == ({"web": "2"}, {})  # the action closed; the device keeps the version it runs
    rest[0].report_app("failure", "web", "2", error="pull: manifest unknown")
    ro = _wait(lambda: (x := c.get("/api/v1/rollouts/web2").json())["status"] == "paused" and x, "the app rollout to pause")
    acts = {a["device"]: a for a in c.get("/api/v1/rollouts/web2/actions").json()}
    assert acts[rest[0].name]["status"] == "failure" and acts[rest[0].name]["app_id"] == ro["app"]["id"]
    assert acts[rest[0].name]["history"][-1]["message"] == "pull: manifest unknown"
    assert rest[0].apps() == ({"web": "1"}, {})  # a failed device is told its old version again
    c.post("/api/v1/rollouts/web2/resume").raise_for_status()
    rest[1].report_app("applied", "web", "2")
    _wait(lambda: c.get("/api/v1/rollouts/web2").json()["status"] == "finished", "the app rollout to finish")

    # Outside its window, and when download-only, the device pulls the new version and keeps the old one running.
    c.put("/api/v1/groups/canary/window", json={"window": {"cron": "0 0 29 2 *", "duration_minutes": 30}}).raise_for_status()
    c.post("/api/v1/rollouts", json={"name": "web3", "app": {"name": "web", "version": "3"}, "target": {"groups": ["canary"]}})
    assert canary.apps() == ({"web": "2"}, {"web": "3"})
    pre = canary.state()["desired"]["prefetch"][0]
    assert pre["action"]["install"] is False and pre["action"]["window_opens_at"].startswith("2028-02-29T00:00")
    c.put("/api/v1/groups/canary/window", json={"window": None}).raise_for_status()
    assert canary.apps() == ({"web": "3"}, {})
    ro = c.post("/api/v1/rollouts/web3/cancel").json()
    assert ro["counts"] == {"canceled": 1}  # an app action closes at once: the device follows its desired state
    assert canary.apps() == ({"web": "2"}, {})

    dl = c.post(
        "/api/v1/rollouts",
        json={
            "name": "web3-dl",
            "app": {"name": "web", "version": "3"},
            "type": "download_only",
            "target": {"groups": ["canary"]},
        },
    )
    assert dl.status_code == 201, dl.text
    assert canary.apps() == ({"web": "2"}, {"web": "3"})
    canary.report_app("downloaded", "web", "3")
    _wait(lambda: c.get("/api/v1/rollouts/web3-dl").json()["status"] == "finished", "the download-only app rollout")
    assert canary.apps() == ({"web": "2"}, {})
    audit = [e for e in c.get("/api/v1/audit").json() if e["action"] == "rollout.create" and e["subject"] == "web2"]
    assert audit and audit[0]["details"]["app"] == "web:2"
    c.close()
