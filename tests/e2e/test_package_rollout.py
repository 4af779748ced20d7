"""A package rollout in two phases on lab devices: each device its own RAUC service, the real agent, and real apt and
dpkg on a root of its own; apt fetches the overlay's signed indexes and the packages from the server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bulkhead.lab.device import LabDevice
from tests.e2e.conftest import Fleet, build_release
from tests.overlay_debs import make_deb

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("apt-get", "dpkg", "gpg", "gpgv", "dpkg-deb")),
    reason="needs apt, dpkg, gpg and gpgv (Debian packages apt, dpkg, gnupg, gpgv)",
)


def _has(d: LabDevice) -> str | None:
    """What the device's own dpkg database says it has of lab-hello (dpkg-query on its root)."""
    r = subprocess.run(
        ["dpkg-query", f"--admindir={d.apt_root / 'var/lib/dpkg'}", "-W", "-f", "${Status} ${Version}", "lab-hello"],
        capture_output=True,
        text=True,
    )
    status, _, version = r.stdout.rpartition(" ")
    return version if r.returncode == 0 and status.endswith("installed") else None


def _rollout(fleet: Fleet, name: str) -> dict[str, Any]:
    with fleet.api() as c:
        doc: dict[str, Any] = c.get(f"/api/v1/rollouts/{name}").json()
        return doc


def _actions(fleet: Fleet, name: str) -> dict[str, dict[str, Any]]:
    with fleet.api() as c:
        return {a["device"]: a for a in c.get(f"/api/v1/rollouts/{name}/actions").json()}


def test_a_package_set_rolls_out_in_two_phases_to_lab_devices_with_apt(fleet: Fleet, tmp_path: Path) -> None:
    with fleet.api() as c:
        for version in ("1.0-1", "1.0-2"):
            deb = make_deb(tmp_path / "debs", "lab-hello", version)
            r = c.post("/api/v1/overlay/packages", params={"suite": "bookworm"}, content=deb.read_bytes())
            assert r.status_code == 201, r.text
        for group in ("canary", "line"):
            c.patch(f"/api/v1/groups/{group}/desired", json={"packages": {"lab-hello": {"version": "1.0-1"}}}).raise_for_status()
    canary, line = fleet.device("pkg-canary", group="canary", apt=True), fleet.device("pkg-line", group="line", apt=True)
    fleet.wait(lambda: _has(canary) == _has(line) == "1.0-1", 90, "both devices to install lab-hello 1.0-1 with apt")
    assert (canary.apt_root / "usr/share/lab-hello/version").read_text() == "1.0-1\n"

    body = {
        "name": "hello-1.0-2",
        "packages": {"lab-hello": {"version": "1.0-2", "hold": True}},
        "target": {"groups": ["canary", "line"]},
        "phases": [{"group": "canary", "error_threshold": 0}, {"group": "line", "error_threshold": 0}],
    }
    with fleet.api() as c:
        r = c.post("/api/v1/rollouts", json=body)
        assert r.status_code == 201, r.text
    fleet.wait(lambda: _has(canary) == "1.0-2", 60, "the canary to install 1.0-2")
    fleet.wait(lambda: _rollout(fleet, "hello-1.0-2")["status"] == "finished", 60, "the package rollout to finish")
    assert _has(line) == "1.0-2" and (line.apt_root / "usr/share/lab-hello/version").read_text() == "1.0-2\n"
    acts = _actions(fleet, "hello-1.0-2")
    assert {n: (a["phase"], a["status"]) for n, a in acts.items()} == {"pkg-canary": (0, "success"), "pkg-line": (1, "success")}
    done = {n: a["history"][-1]["at"] for n, a in acts.items()}
    line_offered = next(h["at"] for h in acts["pkg-line"]["history"] if h["status"] != "scheduled")
    assert done["pkg-canary"] <= line_offered, "phase 2 opened only after the canary succeeded"
    held = subprocess.run(
        ["dpkg-query", f"--admindir={line.apt_root / 'var/lib/dpkg'}", "-W", "-f", "${Status}", "lab-hello"],
        capture_output=True,
        text=True,
    ).stdout
    assert held.startswith("hold "), held
    # What the devices report follows what dpkg has, and the set became each device's own desired state.
    fleet.wait(lambda: "lab-hello" in str(fleet.show("pkg-line")["reported"].get("packages")), 30, "the inventory with lab-hello")
    assert fleet.show("pkg-line")["desired"]["packages"]["lab-hello"]["version"] == "1.0-2"

    # A version the overlay does not have: apt's own words on the canary's action, the rollout pauses before the
    # line, and the devices keep what they run.
    with fleet.api() as c:
        bad = {**body, "name": "hello-9", "packages": {"lab-hello": {"version": "9.9-1"}}}
        assert c.post("/api/v1/rollouts", json=bad).status_code == 201
    ro = fleet.wait(lambda: (x := _rollout(fleet, "hello-9"))["status"] == "paused" and x, 60, "the bad rollout to pause")
    assert ro["current_phase"] == 0
    acts = _actions(fleet, "hello-9")
    assert acts["pkg-canary"]["status"] == "failure"
    assert "Version '9.9-1' for 'lab-hello' was not found" in acts["pkg-canary"]["history"][-1]["message"]
    assert acts["pkg-line"]["status"] == "scheduled" and _has(line) == _has(canary) == "1.0-2"
    with fleet.api() as c:
        assert c.post("/api/v1/rollouts/hello-9/cancel").json()["status"] == "canceled"


def test_desired_packages_are_applied_on_the_new_slot_and_the_health_check_covers_them(fleet: Fleet, tmp_path: Path) -> None:
    """Packages and the OS image stay decoupled: the new slot boots with its image's (empty) dpkg database, the agent
    applies the desired packages there before it marks the slot good; a slot on which they cannot be installed is
    rolled back by the health check, and the device keeps running the old slot with its packages."""
    v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
    v3 = fleet.upload(build_release(fleet.work, "3.0", fleet.pki))
    with fleet.api() as c:
        deb = make_deb(tmp_path / "debs", "lab-hello", "1.0-1")
        pkg = c.post("/api/v1/overlay/packages", params={"suite": "bookworm"}, content=deb.read_bytes()).json()
        c.patch("/api/v1/groups/lab/desired", json={"packages": {"lab-hello": {"version": "1.0-1"}}}).raise_for_status()
    dev = fleet.device("pkg-os", initial_version="1.0", apt=True)
    fleet.wait(lambda: _has(dev) == "1.0-1", 90, "lab-hello 1.0-1 on slot A")
    slot_a_root = dev.apt_root

    with fleet.api() as c:
        c.put("/api/v1/devices/pkg-os/desired-release", json={"release_id": v2["id"]}).raise_for_status()
    fleet.wait(lambda: fleet.show("pkg-os")["update"].get("phase") == "success", 180, "the update to 2.0")
    assert dev.booted == "B" and dev.apt_root != slot_a_root
    assert _has(dev) == "1.0-1", "applied on the new slot before it was marked good"
    events = fleet.api().get("/api/v1/devices/pkg-os/events").json()
    assert any(e["kind"] == "package" and e["phase"] == "applied" for e in events)

    # The overlay no longer has the version: slot B keeps it (dpkg has it, apt is not even asked), but the next
    # image cannot get it, so the health check rolls that slot back.
    with fleet.api() as c:
        assert c.delete(f"/api/v1/overlay/packages/{pkg['id']}").status_code in (200, 204)
        c.put("/api/v1/devices/pkg-os/desired-release", json={"release_id": v3["id"]}).raise_for_status()
    up = fleet.wait(lambda: (u := fleet.show("pkg-os")["update"]).get("phase") == "rolled_back" and u, 240, "the rollback of 3.0")
    assert "packages not as asked: lab-hello (asked 1.0-1, has none)" in up["reason"], up
    assert dev.booted == "B" and _has(dev) == "1.0-1" and dev.boots == 4  # A, B, A (3.0: rolled back), B
