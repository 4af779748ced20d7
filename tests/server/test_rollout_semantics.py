"""Rollout semantics without traps, groups as first-class objects, the downgrade guard, and time zones,
over the management API of a real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import httpx

from tests.server.conftest import LiveServer
from tests.server.test_rollouts import Dev, _setup, _wait


def _provision(c: httpx.Client, name: str, groups: list[str], compatible: str = "Test Config") -> dict[str, Any]:
    r = c.post("/api/v1/devices", json={"name": name, "compatible": compatible, "groups": groups})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _refused(r: httpx.Response, status: int, *fragments: str) -> None:
    assert r.status_code == status, r.text
    message = r.json()["message"]
    for f in fragments:
        assert f in message, (f, message)


def test_start_at_offset_is_honoured_and_out_of_range_times_are_refused(server: LiveServer) -> None:
    c, rel = _setup(server)
    d = Dev(c, "tz-1", "tz")
    for start_at, message in (
        ("9999-01-01T00:00:00+00:00", "outside 2000-01-01 to 2100-01-01"),
        ("1970-01-01T00:00:00+00:00", "outside 2000-01-01 to 2100-01-01"),
        ("2030-01-01T02:00:00", "needs a time zone offset"),
    ):
        body = {"name": "x", "release_id": rel, "target": {"groups": ["tz"]}, "start_at": start_at}
        _refused(c.post("/api/v1/rollouts", json=body), 400, message)
    assert c.get("/api/v1/rollouts").json() == []  # nothing committed

    # The same instant written in +05:00: stored as UTC, read back as UTC, and the rollout starts on time
    # (on SQLite the offset used to be dropped, so it started five hours late).
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=3)
    local = start.astimezone(dt.timezone(dt.timedelta(hours=5)))
    body = {"name": "tz", "release_id": rel, "target": {"groups": ["tz"]}, "start_at": local.isoformat()}
    r = c.post("/api/v1/rollouts", json=body)
    assert r.status_code == 201 and r.json()["status"] == "scheduled", r.text
    got = dt.datetime.fromisoformat(c.get("/api/v1/rollouts/tz").json()["start_at"])
    assert got == start and got.utcoffset() == dt.timedelta(0)
    _wait(lambda: d.release() is not None, "the scheduled start", timeout=30)
    assert time.time() >= start.timestamp() - 0.5
    c.close()


def test_a_target_must_name_what_exists_and_match_devices(server: LiveServer) -> None:
    c, rel = _setup(server)
    Dev(c, "t-1", "alpha")
    c.post("/api/v1/devices/t-1/tags", json={"add": ["blue"]}).raise_for_status()
    c.post("/api/v1/groups", json={"name": "empty"}).raise_for_status()
    _provision(c, "t-other", ["alpha"], compatible="Other Board")
    cases = [
        ({"groups": ["canary", "line"]}, None, "group(s) canary, line do not exist; groups: alpha, empty"),
        ({"groups": ["alpha"]}, [{"group": "nope"}], "group(s) nope do not exist"),
        ({"tags": ["red"]}, None, "no device has tag(s) red; tags: blue"),
        ({"groups": ["empty"]}, None, "the target matches no device (1 active device(s) of compatible 'Test Config'"),
    ]
    for target, phases, message in cases:
        body = {"name": "x", "release_id": rel, "target": target, "phases": phases}
        _refused(c.post("/api/v1/rollouts", json=body), 400, message)
    assert c.get("/api/v1/rollouts").json() == []

    # Deliberately empty: accepted, finishes with no device, and takes in a device that joins later.
    body = {"name": "late", "release_id": rel, "target": {"groups": ["empty"]}, "allow_empty": True}
    ro = c.post("/api/v1/rollouts", json=body).json()
    assert ro["devices"] == 0 and ro["status"] == "finished" and ro["phases"][0]["state"] == "finished"
    c.put("/api/v1/groups/empty/devices/t-1").raise_for_status()
    _wait(lambda: c.get("/api/v1/rollouts/late").json()["devices"] == 1, "the device that joined the group")
    c.close()


def test_every_percentage_phase_holds_a_device_and_thresholds_of_the_implicit_phase(server: LiveServer) -> None:
    c, rel = _setup(server)
    devs = [Dev(c, f"p-{i}", "pct") for i in range(3)]
    body = {"name": "pct", "release_id": rel, "target": {"groups": ["pct"]}, "phases": [{"percent": 34}, {"percent": 66}]}
    ro = c.post("/api/v1/rollouts", json=body).json()
    assert [p["devices"] for p in ro["phases"]] == [1, 0] and ro["current_phase"] == 0, ro
    offered = [d for d in devs if d.release() is not None]
    assert len(offered) == 1  # the canary; the others wait for it
    offered[0].report("success", rel)
    _wait(lambda: all(d.release() is not None for d in devs), "phase 2")
    ro = c.get("/api/v1/rollouts/pct").json()
    assert [p["devices"] for p in ro["phases"]] == [1, 2]
    for d in devs:
        if d is not offered[0]:
            d.report("success", rel)
    ro = _wait(lambda: (x := c.get("/api/v1/rollouts/pct").json())["status"] == "finished" and x, "the finish")
    assert [p["state"] for p in ro["phases"]] == ["finished", "finished"]
    c.close()


def test_an_empty_phase_is_no_passed_canary_gate(server: LiveServer) -> None:
    c, rel = _setup(server)
    c.post("/api/v1/groups", json={"name": "gate-canary"}).raise_for_status()
    line = Dev(c, "gate-line-1", "gate-line")
    body: dict[str, Any] = {
        "name": "gate",
        "release_id": rel,
        "target": {"groups": ["gate-canary", "gate-line"]},
        "phases": [{"group": "gate-canary"}, {"group": "gate-line"}],
    }
    _refused(c.post("/api/v1/rollouts", json=body), 400, "phase 1 ('group gate-canary') would hold no device")
    ro = c.post("/api/v1/rollouts", json={**body, "allow_empty": True}).json()
    assert ro["status"] == "paused" and "has no devices" in ro["pause_reason"], ro
    assert ro["phases"][0]["state"] == "paused" and line.release() is None  # the line waits for a canary
    c.post("/api/v1/rollouts/gate/resume").raise_for_status()  # the operator skips the empty phase
    assert line.release() is not None
    c.close()


def test_groups_are_first_class(server: LiveServer) -> None:
    c, rel = _setup(server)
    _refused(c.put("/api/v1/groups/ghost/window", json={"window": None}), 404, "group 'ghost' does not exist")
    assert c.post("/api/v1/groups", json={"name": "g1"}).status_code == 201
    _refused(c.post("/api/v1/groups", json={"name": "g1"}), 409, "exists already")
    _refused(c.post("/api/v1/groups", json={"name": "bad name"}), 400, "is invalid")
    _provision(c, "m-1", [])
    _provision(c, "m-2", ["prov"])  # a group only a device names is a group too
    assert {g["name"]: g["devices"] for g in c.get("/api/v1/groups").json()} == {"g1": 0, "prov": 1}
    assert c.put("/api/v1/groups/g1/devices/m-1").json() == {"device": "m-1", "groups": ["g1"]}
    _refused(c.put("/api/v1/groups/g1/devices/m-1"), 409, "already")
    _refused(c.put("/api/v1/groups/nope/devices/m-1"), 404, "groups: g1, prov")
    shown = c.get("/api/v1/groups/g1").json()
    assert shown["device_names"] == ["m-1"] and shown["devices"] == 1
    _refused(c.delete("/api/v1/groups/g1"), 409, "still has devices: m-1")

    c.post("/api/v1/rollouts", json={"name": "uses-g1", "release_id": rel, "target": {"groups": ["g1"]}}).raise_for_status()
    assert c.delete("/api/v1/groups/g1/devices/m-1").json()["groups"] == []
    _refused(c.delete("/api/v1/groups/g1/devices/m-1"), 404, "not in group 'g1'")
    _refused(c.delete("/api/v1/groups/g1"), 409, "rollout 'uses-g1'")
    c.post("/api/v1/rollouts/uses-g1/cancel").raise_for_status()
    tok = c.post("/api/v1/bootstrap-tokens", json={"name": "t-g1", "group": "g1"}).json()
    _refused(c.delete("/api/v1/groups/g1"), 409, "bootstrap token 't-g1'")
    op = c.post("/api/v1/tokens", json={"name": "op", "user": "op-user", "role": "operator"})
    assert op.status_code == 201, op.text
    with server.client(op.json()["token"]) as oc:  # operators do not see bootstrap tokens, only that there is one
        _refused(oc.delete("/api/v1/groups/g1"), 409, "1 bootstrap token(s)")
        assert "t-g1" not in oc.get("/api/v1/groups/g1").text
    c.delete(f"/api/v1/bootstrap-tokens/{tok['id']}").raise_for_status()
    assert c.delete("/api/v1/groups/g1").status_code == 204
    assert c.get("/api/v1/groups/g1").status_code == 404
    audit = [e["action"] for e in c.get("/api/v1/audit", params={"action": "group."}).json()]
    for verb in ("create", "add_device", "remove_device", "delete"):
        assert f"group.{verb}" in audit, (verb, audit)
    c.close()


def test_downgrades_are_refused_unless_allowed(server: LiveServer) -> None:
    c, rel = _setup(server)
    version = c.get(f"/api/v1/releases/{rel}").json()["version"]
    d = Dev(c, f"dg-{uuid.uuid4().hex[:4]}", "dg")
    newer = "9999.1"
    d.c.post("/device/v1/reports", headers=d.h, json={"events": [], "inventory": {"os_version": newer}}).raise_for_status()
    body = {"name": "dg", "release_id": rel, "target": {"groups": ["dg"]}}
    _refused(c.post("/api/v1/rollouts", json=body), 400, f"release {version} is older", f"{d.name} ({newer})", "allow_downgrade")
    assert c.post("/api/v1/rollouts", json={**body, "allow_downgrade": True}).status_code == 201
    _refused(c.patch("/api/v1/groups/dg/desired", json={"release_id": rel}), 400, f"version {version} is older than {newer}")
    assert c.patch("/api/v1/groups/dg/desired", json={"release_id": rel, "allow_downgrade": True}).status_code == 200
    _refused(c.put(f"/api/v1/devices/{d.name}/desired-release", json={"release_id": rel}), 400, f"runs {newer}")
    r = c.put(f"/api/v1/devices/{d.name}/desired-release", json={"release_id": rel, "allow_downgrade": True})
    assert r.status_code == 200, r.text
    c.close()
