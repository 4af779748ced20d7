"""Rollouts in the lab: real RAUC installs steered by phases, thresholds, maintenance windows and action types."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Fleet, build_release


def _rollout(fleet: Fleet, name: str) -> dict[str, Any]:
    with fleet.api() as c:
        r = c.get(f"/api/v1/rollouts/{name}")
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc


def test_two_phases_pause_on_health_failures_and_resume(fleet: Fleet) -> None:
    v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
    canary_ok = fleet.device("canary-ok", group="canary", initial_version="1.0")
    canary_sick = fleet.device("canary-sick", group="canary", initial_version="1.0")
    canary_sick.fail_health("B")
    line = fleet.device("line-1", group="line", initial_version="1.0")
    fleet.wait(lambda: all(fleet.show(d.spec.name)["last_seen"] for d in fleet.devices), 60, "enrollment")
    with fleet.api() as c:
        r = c.post(
            "/api/v1/rollouts",
            json={
                "name": "v2",
                "release_id": v2["id"],
                "target": {"groups": ["canary", "line"]},
                "phases": [{"group": "canary", "error_threshold": 50}, {"group": "line"}],
            },
        )
        assert r.status_code == 201, r.text

    paused = fleet.wait(lambda: (ro := _rollout(fleet, "v2"))["status"] == "paused" and ro, 240, "the rollout to pause itself")
    assert "1 of 2 devices failed in phase 'group canary'" in paused["pause_reason"]
    assert paused["phases"][0]["counts"] == {"success": 1, "rolled_back": 1}
    assert paused["phases"][1]["devices"] == 0 and line.boots == 1  # phase 2 held back
    assert canary_ok.booted == "B" and canary_sick.booted == "A" and canary_sick.boots == 3
    fleet.wait(lambda: _rollout(fleet, "v2")["phases"][0]["bytes"] >= 2 * v2["size"], 30, "both canaries' bytes")

    with fleet.api() as c:
        assert c.post("/api/v1/rollouts/v2/resume").json()["status"] == "running"
    fleet.wait(lambda: _rollout(fleet, "v2")["status"] == "finished", 240, "phase 2 and the end of the rollout")
    assert line.booted == "B" and fleet.show("line-1")["update"]["phase"] == "success"

    def actions() -> dict[str, dict[str, Any]]:
        with fleet.api() as c:
            return {a["device"]: a for a in c.get("/api/v1/rollouts/v2/actions").json()}

    # Bytes are counted in memory and flushed every few seconds (no database write per request).
    acts = fleet.wait(lambda: (a := actions())["line-1"]["bytes"] >= v2["size"] and a, 30, "the bytes count")
    assert acts["line-1"]["status"] == "success"
    assert [h["status"] for h in acts["line-1"]["history"]][:2] == ["scheduled", "downloading"]


def test_window_holds_the_install_and_download_only_installs_nothing(fleet: Fleet) -> None:
    v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
    night = fleet.device("night-1", group="night", initial_version="1.0")
    depot = fleet.device("depot-1", group="depot", initial_version="1.0")
    with fleet.api() as c:
        c.put("/api/v1/groups/night/window", json={"window": {"cron": "0 0 29 2 *", "duration_minutes": 30}}).raise_for_status()
        for name, group, kind in (("night", "night", "soft"), ("depot", "depot", "download_only")):
            # the devices may not have enrolled yet: allow_empty, they join when they do
            body = {"name": name, "release_id": v2["id"], "type": kind, "target": {"groups": [group]}, "allow_empty": True}
            c.post("/api/v1/rollouts", json=body).raise_for_status()

    def action(rollout: str) -> dict[str, Any]:
        with fleet.api() as c:
            rows: list[dict[str, Any]] = c.get(f"/api/v1/rollouts/{rollout}/actions").json()
            return rows[0] if rows else {}  # the device may not have enrolled yet: it joins when it does

    fleet.wait(lambda: action("night").get("status") == "downloaded", 120, "the download outside the window")
    fleet.wait(lambda: action("depot").get("status") == "downloaded" and not action("depot")["active"], 120, "download-only")
    for _ in range(10):  # a few more polls: nothing installs
        fleet.wait(lambda: True, 1, "")
    assert night.boots == 1 and night.booted == "A" and fleet.show("night-1")["update"]["phase"] == "downloaded"
    assert depot.boots == 1 and depot.booted == "A"
    assert '"2.0"' not in depot.rauc.rauc("status", "--detailed", "--output-format=json").stdout  # nothing installed
    assert list((depot.data_dir / "downloads").glob("*.raucb")), "the artifact stays on the device"
    # the rollout advances in the job queue after the action closes: finished a moment later
    fleet.wait(lambda: _rollout(fleet, "depot")["status"] == "finished", 30, "the download-only rollout to finish")

    with fleet.api() as c:  # the window opens
        c.put("/api/v1/groups/night/window", json={"window": {"cron": "* * * * *", "duration_minutes": 30}}).raise_for_status()
    fleet.wait(lambda: action("night").get("status") == "success", 180, "the install once the window opened")
    assert night.booted == "B" and night.boots == 2
    assert fleet.show("depot-1")["update"]["phase"] == "downloaded" and depot.boots == 1
