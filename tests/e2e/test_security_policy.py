"""Security updates by policy end to end with lab devices (real RAUC services with file-backed A/B slots and real
agents): release 1.1 is marked a security update; once due, a lab device installs it through RAUC by itself, while a
device whose update is postponed stays on 1.0 until the postponement ends, and then installs it too. No sleeping on
timers: the due date follows from the recorded availability and the group's window."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Fleet, build_release


def test_a_due_security_release_installs_through_rauc_and_a_postponed_device_waits(fleet: Fleet) -> None:
    a, p = fleet.device("sec-a"), fleet.device("sec-p")
    fleet.wait(lambda: all(fleet.show(n)["reported"].get("os_version") == "1.0" for n in ("sec-a", "sec-p")), 90, "inventories")
    v11 = fleet.upload(build_release(fleet.work, "1.1", fleet.pki))
    with fleet.api() as c:
        r = c.put(f"/api/v1/releases/{v11['id']}/security", json={"reason": "CVE-2027-0001"})
        assert r.status_code == 200, r.text
        body = {"release_id": v11["id"], "device": "sec-p", "days": 5, "reason": "operator on site"}
        assert c.post("/api/v1/security/postponements", json=body).status_code == 201
        postponement = c.get("/api/v1/security/postponements").json()[0]
        assert c.put("/api/v1/security/policies/groups/lab", json={"window_days": 0}).status_code == 200  # due now
        c.post("/api/v1/security/run").raise_for_status()

    def os_version(name: str) -> Any:
        return fleet.show(name)["reported"].get("os_version")

    fleet.wait(lambda: os_version("sec-a") == "1.1", 240, "sec-a to install the security update through RAUC")
    assert a.booted == "B"
    assert os_version("sec-p") == "1.0" and p.booted == "A"  # postponed: not offered
    with fleet.api() as c:
        assert c.get("/api/v1/devices/sec-p/security").json()["pending"]["state"] == "postponed"
        assert c.delete(f"/api/v1/security/postponements/{postponement['id']}").status_code == 204
        c.post("/api/v1/security/run").raise_for_status()
    fleet.wait(lambda: os_version("sec-p") == "1.1", 240, "sec-p to install it once its postponement ended")
    assert p.booted == "B"
    with fleet.api() as c:
        [mark] = c.get("/api/v1/security/releases").json()
        fleet.wait(
            lambda: c.get(f"/api/v1/rollouts/{mark['rollout']['id']}").json()["status"] == "finished", 60, "rollout finished"
        )
        assert c.get("/api/v1/devices/sec-a/security").json()["pending"] is None  # nothing pending any more
