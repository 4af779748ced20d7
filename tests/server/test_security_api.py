"""Security updates by policy over the real server (SQLite + uvicorn, PostgreSQL + granian), driven by devices speaking
the agent protocol: a release marked a security update becomes a due device's desired OS release (what its agent
fetches) within its window, a postponed device gets it only once the postponement ends, an opt_out group never does;
postponing past the limit and bad input get a clear 4xx and change nothing; everything is audited. Times are set
relative to now (the server's clock is the system's), so nothing sleeps on a timer."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from tests.server.conftest import LiveServer
from tests.server.test_rollouts import GOOD, Dev

RUNNING = "2011.03-1"  # older than the test bundle's 2011.03-2


def _enroll(c: httpx.Client, name: str, group: str) -> Dev:
    d = Dev(c, name, group)
    r = c.post("/device/v1/reports", headers=d.h, json={"events": [], "inventory": {"os_version": RUNNING}})
    r.raise_for_status()
    return d


def _err(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error", "message"} and text in body["message"], body


def _ago(days: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat()


def test_security_release_installs_by_policy_postponed_and_opted_out_devices_wait(server: LiveServer) -> None:
    c = server.client(server.tenant())
    r = c.post("/api/v1/releases", content=GOOD.read_bytes())
    assert r.status_code == 201, r.text
    rel = r.json()["id"]
    a, b, o = _enroll(c, "sec-a", "field"), _enroll(c, "sec-b", "field"), _enroll(c, "sec-o", "optout")
    assert a.release() is None and "security" not in a.state()  # not a security update yet: nothing pending

    # bad input: 4xx with what to do, and nothing changes
    _err(c.put(f"/api/v1/releases/{rel}/security", json={"available_at": "2027-01-01T00:00:00"}), 400, "offset")
    _err(c.put(f"/api/v1/releases/{rel}/security", json={"available_at": "2099-01-01T00:00:00+00:00"}), 400, "future")
    _err(c.put("/api/v1/releases/999999/security", json={}), 404, "does not exist")
    _err(c.put("/api/v1/security/policies/groups/optout", json={"mode": "manual"}), 422, "mode")
    _err(c.put("/api/v1/security/policies/groups/nope", json={"mode": "opt_out"}), 404, "group 'nope' does not exist")
    body = {"release_id": rel, "device": "sec-b", "days": 3, "reason": "x"}
    _err(c.post("/api/v1/security/postponements", json=body), 409, "not a security update")
    assert c.get("/api/v1/security/releases").json() == []
    assert c.get("/api/v1/security/policies").json()["policies"] == []

    assert c.put("/api/v1/security/policies/groups/optout", json={"mode": "opt_out"}).status_code == 200
    r = c.put(f"/api/v1/releases/{rel}/security", json={"available_at": _ago(3), "reason": "CVE-2027-0001"})
    assert r.status_code == 200, r.text
    pending = a.state()["security"]  # the agent learns what is pending and when it is due (7 days by default)
    assert pending["version"] == "2011.03-2" and pending["mode"] == "automatic" and pending["postponed_until"] is None
    assert c.post("/api/v1/security/run").json()["placed"] == 0
    assert a.release() is None  # inside its window: not yet

    r = c.post("/api/v1/security/postponements", json={**body, "days": 10, "reason": "line stop"})
    assert r.status_code == 201, r.text
    postponement = r.json()
    _err(c.post("/api/v1/security/postponements", json={**body, "days": 40}), 409, "at most 30 days in total")
    assert [p["until"] for p in c.get("/api/v1/security/postponements").json()] == [postponement["until"]]
    assert b.state()["security"]["postponed_until"] == postponement["until"]

    # the group's window is 2 days: released 3 days ago, the update is due now
    assert c.put("/api/v1/security/policies/groups/field", json={"window_days": 2}).status_code == 200
    c.post("/api/v1/security/run").raise_for_status()
    got = a.release()
    assert got is not None and got["id"] == rel and got["action"] is not None  # what the agent fetches and installs
    assert b.release() is None  # postponed
    assert o.release() is None  # opt_out: never automatically
    assert c.get("/api/v1/devices/sec-o/security").json()["pending"]["state"] == "opt_out"
    assert c.get("/api/v1/devices/sec-b/security").json()["pending"]["state"] == "postponed"
    [mark] = c.get("/api/v1/security/releases").json()
    rollout = c.get(f"/api/v1/rollouts/{mark['rollout']['id']}").json()  # progress and thresholds are a rollout's
    assert rollout["devices"] == 1 and rollout["created_by"] == "system:security-policy"

    assert c.delete(f"/api/v1/security/postponements/{postponement['id']}").status_code == 204  # the postponement ends
    c.post("/api/v1/security/run").raise_for_status()
    got = b.release()
    assert got is not None and got["id"] == rel
    assert o.release() is None

    audit: list[dict[str, Any]] = c.get("/api/v1/audit", params={"limit": 200}).json()
    actions = {e["action"]: e for e in audit}
    assert {"release.security", "security.policy", "security.postpone", "security.postpone_end", "security.install"} <= set(
        actions
    )
    assert actions["security.postpone"]["details"]["reason"] == "line stop"
    assert actions["security.postpone"]["actor"].startswith("user:")
