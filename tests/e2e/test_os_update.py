"""Lab devices on v1 get v2 through the real RAUC service, reboot into the other slot and confirm it; one rolls back."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from bulkhead.lab import images
from tests.e2e.conftest import Fleet, build_release


def test_update_three_devices_one_rolls_back(fleet: Fleet) -> None:
    v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
    good = [fleet.device(f"dev-{i}", initial_version="1.0") for i in range(2)]
    sick = fleet.device("dev-sick", initial_version="1.0")
    sick.fail_health("B")  # the slot it will install into fails its health check
    for d in fleet.devices:
        assert d.booted == "A"
    fleet.wait(lambda: all(fleet.show(d.spec.name)["reported"].get("rauc") for d in fleet.devices), 60, "inventory")
    with fleet.api() as c:
        c.patch("/api/v1/groups/lab/desired", json={"release_id": v2["id"]}).raise_for_status()

    def done() -> bool:
        return all(fleet.show(d.spec.name)["update"].get("phase") in ("success", "rolled_back") for d in fleet.devices)

    fleet.wait(done, 240, "every device to finish the update")
    for d in good:
        dev = fleet.show(d.spec.name)
        assert dev["update"]["phase"] == "success" and dev["update"]["version"] == "2.0"
        assert d.booted == "B" and d.boots == 2
        assert dev["reported"]["rauc"]["booted"] == "B" or fleet.wait(
            lambda name=d.spec.name: fleet.show(name)["reported"]["rauc"]["booted"] == "B", 30, "inventory after boot"
        )
        slots = d.rauc.rauc("status", "--detailed", "--output-format=json")
        assert '"boot_status":"good"' in slots.stdout.replace(" ", "")
        phases = [e["phase"] for e in reversed(fleet.api().get(f"/api/v1/devices/{d.spec.name}/events").json())]
        for expected in ("downloading", "installing", "rebooting", "verifying", "success"):
            assert expected in phases, phases
        assert phases.index("downloading") < phases.index("installing") < phases.index("rebooting") < phases.index("success")
    dev = fleet.show("dev-sick")
    assert dev["update"]["phase"] == "rolled_back"
    assert "health check failed" in dev["update"]["reason"] and "command" in dev["update"]["reason"]
    assert sick.booted == "A" and sick.boots == 3  # A, then B (failed), then back to A
    assert sick.rauc.primary() == "A"
    # It does not retry the release that rolled back on every poll.
    fleet.wait(lambda: fleet.show("dev-sick")["last_seen"], 5, "a later poll")
    assert sick.boots == 3


def test_release_for_another_compatible_is_refused_before_download(fleet: Fleet) -> None:
    """A device enrolled under the wrong compatible is offered that board's release; the agent checks RAUC's own."""
    other = fleet.upload(images.build_release(fleet.work, "other-board", "9.0", fleet.pki.cert, fleet.pki.key))
    dev = fleet.device("mislabeled", initial_version="1.0", agent_compatible="other-board")
    fleet.wait(lambda: fleet.show("mislabeled")["last_seen"], 30, "enrollment")
    with fleet.api() as c:
        c.put("/api/v1/devices/mislabeled/desired-release", json={"release_id": other["id"]}).raise_for_status()
    up = fleet.wait(
        lambda: fleet.show("mislabeled")["update"].get("phase") == "failure" and fleet.show("mislabeled")["update"], 30, "refusal"
    )
    assert "release is for 'other-board' but this device is 'bulkhead-lab'" in up["reason"]
    assert fleet.show("mislabeled")["bytes_served"] == 0 and dev.boots == 1 and dev.booted == "A"
    assert not any((dev.data_dir / "downloads").glob("*.raucb*"))


def test_an_applications_update_lock_delays_the_install_until_it_is_released(fleet: Fleet) -> None:
    """An application on the device holds the update lock (flock, as `flock /run/bulkhead/update.lock CMD` would):
    the device downloads the release, says it waits for the lock, and installs once the lock is released."""
    if shutil.which("flock") is None:
        pytest.skip("needs flock (Debian package util-linux)")
    v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
    dev = fleet.device("locked", initial_version="1.0")
    fleet.wait(lambda: fleet.show("locked")["last_seen"], 30, "enrollment")
    dev.update_lock.parent.mkdir(parents=True, exist_ok=True)
    app = subprocess.Popen(["flock", "--exclusive", str(dev.update_lock), "sleep", "300"], start_new_session=True)
    try:
        with fleet.api() as c:
            c.put("/api/v1/devices/locked/desired-release", json={"release_id": v2["id"]}).raise_for_status()
        up = fleet.wait(
            lambda: (
                (u := fleet.show("locked")["update"]).get("phase") == "downloaded" and "update lock" in u.get("reason", "") and u
            ),
            60,
            "the device to wait for the update lock",
        )
        assert "an application holds it" in up["reason"] and dev.booted == "A"
        time.sleep(3)  # several polls: still waiting, nothing installed
        assert fleet.show("locked")["update"]["phase"] == "downloaded" and dev.boots == 1
    finally:
        os.killpg(app.pid, signal.SIGKILL)
        app.wait()
    fleet.wait(lambda: fleet.show("locked")["update"].get("phase") == "success", 120, "the install after the lock is released")
    assert dev.booted == "B" and dev.boots == 2
