"""Package rollouts: a rollout carries a package set (Debian packages from the overlay) as it carries an app version,
with the same phases, thresholds, windows and cancel; devices speak the agent protocol over real HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.overlay_debs import make_deb
from tests.server.conftest import LiveServer
from tests.server.test_rollouts import Dev as RolloutDev
from tests.server.test_rollouts import _seq, _wait

pytestmark = pytest.mark.skipif(
    not (shutil.which("gpg") and shutil.which("dpkg-deb")), reason="needs gpg and dpkg-deb (Debian packages gnupg, dpkg)"
)


class Dev(RolloutDev):
    """A device speaking the agent protocol: its desired packages and its package reports."""

    def desired(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.state()["desired"]
        return doc

    def packages(self) -> dict[str, str | None]:
        return {p["name"]: p["version"] for p in self.desired().get("packages", [])}

    def report_packages(self, phase: str, action: Any, error: str | None = None) -> None:
        details = {"installed": {}, "error": error, "action": action}
        ev = {"seq": next(_seq), "kind": "package", "phase": phase, "details": details}
        self.c.post("/device/v1/reports", headers=self.h, json={"events": [ev]}).raise_for_status()


def test_a_package_rollout_in_two_phases_with_thresholds_adoption_and_cancel(server: LiveServer, tmp_path: Path) -> None:
    c = server.client(server.tenant())
    for version in ("1.0-1", "1.0-2"):
        r = c.post(
            "/api/v1/overlay/packages", params={"suite": "bookworm"}, content=make_deb(tmp_path, "pr-hello", version).read_bytes()
        )
        assert r.status_code == 201, r.text
    for group in ("canary", "line"):
        c.patch(f"/api/v1/groups/{group}/desired", json={"packages": {"pr-hello": {"version": "1.0-1"}}}).raise_for_status()
    canary, line = Dev(c, "p-canary", "canary"), [Dev(c, f"p-line-{i}", "line") for i in range(2)]
    assert canary.packages() == {"pr-hello": "1.0-1"} and "packages_action" not in canary.desired()

    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"name": "x", "packages": {"pr-hello": {"version": "1.0-2"}}, "release_id": 1}, 400, "exactly one of release_id"),
        ({"name": "x", "packages": {}}, 422, "packages"),
        ({"name": "x", "packages": {"Bad Name": {"version": "1"}}}, 400, "not a Debian package name"),
        ({"name": "x", "packages": {"pr-hello": {"version": "not a version!"}}}, 400, "not a Debian version"),
        ({"name": "x", "packages": {"pr-hello": {"version": "1", "colour": "red"}}}, 422, "colour"),
        ({"name": "x", "packages": {"pr-hello": {"remove": True, "hold": True}}}, 400, "a package to remove"),
        ({"name": "x", "packages": {"pr-hello": {"version": "1.0-2"}}, "type": "download_only"}, 400, "installs"),
        # line's devices are to have 1.0-1; 0.9-1 would take them back
        ({"name": "x", "packages": {"pr-hello": {"version": "0.9-1"}}, "target": {"groups": ["line"]}}, 400, "older than"),
    ]
    for body, status, message in bad:
        r = c.post("/api/v1/rollouts", json=body)
        assert r.status_code == status and message in r.text, (body, r.text)
    assert c.get("/api/v1/rollouts").json() == [], "a refused rollout stores nothing"

    body = {
        "name": "hello2",
        "packages": {"pr-hello": {"version": "1.0-2"}},
        "target": {"groups": ["canary", "line"]},
        "phases": [{"group": "canary", "error_threshold": 0}, {"group": "line", "error_threshold": 0}],
    }
    ro = c.post("/api/v1/rollouts", json=body).json()
    assert ro["subject"] == "packages pr-hello=1.0-2" and ro["release_id"] is None and ro["app"] is None
    assert ro["packages"] == {"pr-hello": {"name": "pr-hello", "version": "1.0-2", "hold": False, "remove": False}}
    assert [p["devices"] for p in ro["phases"]] == [1, 0]  # phase 2 opens after phase 1
    state = canary.desired()
    action = state["packages_action"]
    assert action["install"] is True and action["type"] == "soft" and canary.packages() == {"pr-hello": "1.0-2"}
    assert state["overlay"]["url"].endswith("/overlay/apt")
    assert all(d.packages() == {"pr-hello": "1.0-1"} and "packages_action" not in d.desired() for d in line)  # waits

    line[0].report_packages("applied", action["id"])  # another device's action: ignored
    canary.report_packages("applied", None)  # a report without the action (its own packages): not the rollout's
    assert c.get("/api/v1/rollouts/hello2").json()["current_phase"] == 0
    canary.report_packages("applied", action["id"])
    _wait(lambda: c.get("/api/v1/rollouts/hello2").json()["current_phase"] == 1, "phase 2 of the package rollout")
    assert canary.packages() == {"pr-hello": "1.0-2"}, "the action closed; the device keeps the version it has"
    assert "packages_action" not in canary.desired()
    assert c.get("/api/v1/devices/p-canary").json()["desired"]["packages"]["pr-hello"]["version"] == "1.0-2"

    acts = [d.desired()["packages_action"] for d in line]
    line[0].report_packages("failure", acts[0]["id"], error="E: Version '1.0-2' for 'pr-hello' was not found")
    ro = _wait(lambda: (x := c.get("/api/v1/rollouts/hello2").json())["status"] == "paused" and x, "the rollout to pause")
    got = {a["device"]: a for a in c.get("/api/v1/rollouts/hello2/actions").json()}
    assert got["p-line-0"]["status"] == "failure"
    assert got["p-line-0"]["history"][-1]["message"] == "E: Version '1.0-2' for 'pr-hello' was not found"
    assert line[0].packages() == {"pr-hello": "1.0-1"}, "a failed device is told its old version again"
    c.post("/api/v1/rollouts/hello2/resume").raise_for_status()
    line[1].report_packages("applied", acts[1]["id"])
    _wait(lambda: c.get("/api/v1/rollouts/hello2").json()["status"] == "finished", "the package rollout to finish")
    assert line[1].packages() == {"pr-hello": "1.0-2"}

    # Outside its window the device keeps its packages and learns when the window opens; a cancel closes at once.
    c.put("/api/v1/groups/line/window", json={"window": {"cron": "0 0 29 2 *", "duration_minutes": 30}}).raise_for_status()
    r = c.post("/api/v1/rollouts", json={**body, "name": "hold", "packages": {"pr-hello": {"version": "1.0-2", "hold": True}},
                                          "target": {"groups": ["line"]}, "phases": None})  # fmt: skip
    assert r.status_code == 201, r.text
    state = line[0].desired()
    assert state["packages_action"]["install"] is False and state["packages_action"]["window_opens_at"].startswith("2028-02-29")
    assert line[0].packages() == {"pr-hello": "1.0-1"}
    c.put("/api/v1/groups/line/window", json={"window": None}).raise_for_status()
    assert [p for p in line[0].desired()["packages"] if p["hold"]] == [
        {"name": "pr-hello", "version": "1.0-2", "hold": True, "remove": False}
    ]
    ro = c.post("/api/v1/rollouts/hold/cancel").json()
    assert ro["counts"] == {"canceled": 2}, "a package action closes at once: the device follows its desired state"
    assert "packages_action" not in line[0].desired() and line[0].packages() == {"pr-hello": "1.0-1"}

    audit = [e for e in c.get("/api/v1/audit").json() if e["action"] == "rollout.create" and e["subject"] == "hello2"]
    assert audit and audit[0]["details"]["packages"]["pr-hello"]["version"] == "1.0-2"
    c.close()
