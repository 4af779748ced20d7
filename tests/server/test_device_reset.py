"""Factory reset (services/device_reset.py): an administrator's request reaches the device in its state answer; the
device, its data erased, enrolls again with the credential it held, without a bootstrap token; nobody else can."""

from __future__ import annotations

import httpx

from tests.server.conftest import LiveServer
from tests.server.test_identity import audited, bootstrap, enroll, state


def _reenroll(c: httpx.Client, name: str, previous: str, **extra: object) -> httpx.Response:
    body = {"name": name, "compatible": "Test Config", "previous_credential": previous, **extra}
    return c.post("/device/v1/enroll", json=body)


def test_a_requested_reset_reaches_the_device_and_its_reenrollment_completes_it(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        old = enroll(c, bootstrap(c, "line", max_uses=1), "press-1").json()["credential"]
        assert "factory_reset" not in state(server, old).json()
        r = c.post("/api/v1/devices/press-1/factory-reset")
        assert r.status_code == 200, r.text
        requested = r.json()["factory_reset_requested_at"]
        assert requested and audited(c, "device.factory_reset", "press-1")
        assert c.get("/api/v1/devices/press-1").json()["factory_reset_requested_at"] == requested
        assert c.post("/api/v1/devices/press-1/factory-reset").json()["factory_reset_requested_at"] == requested  # kept
        epoch = r.json()["credential_epoch"]
        assert state(server, old).json()["factory_reset"] == {"requested_at": requested}

        # The device erased its data and proves itself with the credential it held: the bootstrap token, used up
        # by its first enrollment, is not needed.
        r = _reenroll(c, "press-1", old, attributes={"site": "7"})
        assert r.status_code == 201, r.text
        new = r.json()["credential"]
        assert new != old and r.json()["name"] == "press-1" and r.json()["status"] == "active"
        doc = c.get("/api/v1/devices/press-1").json()
        assert doc["attributes"] == {"site": "7"}
        assert doc["credential_epoch"] == epoch + 1 and doc["factory_reset_requested_at"] is None
        assert audited(c, "device.reenroll", "press-1")
    assert state(server, old).status_code == 401  # the old credential is dead
    answer = state(server, new)
    assert answer.status_code == 200 and "factory_reset" not in answer.json()


def test_events_of_a_reenrolled_device_count_from_one_again(server: LiveServer) -> None:
    """Its outbox was erased with its data: event 1 after the re-enrollment is new, not a repeat of the old 1."""
    admin = server.tenant()

    def report(credential: str, seq: int, what: str) -> None:
        ev = {"seq": seq, "kind": "agent", "phase": None, "release_id": None, "details": {"event": what}}
        with server.client(credential) as d:
            d.post("/device/v1/reports", json={"events": [ev]}).raise_for_status()

    with server.client(admin) as c:
        old = enroll(c, bootstrap(c, "line"), "press-5").json()["credential"]
        for seq in (1, 2, 3):
            report(old, seq, f"before-{seq}")
        c.post("/api/v1/devices/press-5/factory-reset").raise_for_status()
        new = _reenroll(c, "press-5", old).json()["credential"]
        report(new, 1, "after-1")
        got = [e["details"]["event"] for e in c.get("/api/v1/devices/press-5/events").json()]
    assert "after-1" in got and {"before-1", "before-2", "before-3"} <= set(got)


def test_reenrollment_needs_the_devices_own_credential(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        token = bootstrap(c, "line")
        mine = enroll(c, token, "press-2").json()["credential"]
        other = enroll(c, token, "press-3").json()["credential"]
        c.post("/api/v1/devices/press-2/factory-reset").raise_for_status()
        # An attacker with a bootstrap token, another device's credential or a made-up one gets nothing.
        assert enroll(c, token, "press-2").status_code == 409
        for previous in (other, "bhd_not-a-credential", ""):
            r = _reenroll(c, "press-2", previous, bootstrap_token=token if not previous else None)
            assert r.status_code in (401, 409) and "credential" not in r.json(), r.text
        r = c.post("/device/v1/enroll", json={"name": "press-2", "compatible": "Test Config"})
        assert r.status_code == 422 and "bootstrap_token" in r.text
        assert c.get("/api/v1/devices/press-2").json()["status"] == "active"
    assert state(server, mine).json()["factory_reset"]  # still the device's, still asked to reset
    assert state(server, other).status_code == 200


def test_only_an_admin_resets_and_a_request_can_be_withdrawn(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        cred = enroll(c, bootstrap(c, "line"), "press-4").json()["credential"]
        operator = c.post("/api/v1/tokens", json={"name": "o", "user": "otto", "role": "operator"}).json()["token"]
        assert c.delete("/api/v1/devices/press-4/factory-reset").status_code == 409  # nothing to withdraw
    with server.client(operator) as o:
        assert o.post("/api/v1/devices/press-4/factory-reset").status_code == 403
    with server.client(admin) as c:
        c.post("/api/v1/devices/press-4/factory-reset").raise_for_status()
        r = c.delete("/api/v1/devices/press-4/factory-reset")
        assert r.status_code == 200 and r.json()["factory_reset_requested_at"] is None
        assert audited(c, "device.factory_reset_cancel", "press-4")
        c.post("/api/v1/devices/press-4/disable").raise_for_status()
        r = c.post("/api/v1/devices/press-4/factory-reset")
        assert r.status_code == 409 and "enable it first" in r.json()["message"]
        ddi = c.post("/api/v1/devices", json={"name": "ddi-1", "compatible": "Test Config"})
        assert ddi.status_code == 201, ddi.text
        r = c.post("/api/v1/devices/ddi-1/factory-reset")  # a provisioned device has no agent to erase anything
        assert r.status_code == 409 and "on site" in r.json()["message"]
    assert "factory_reset" not in state(server, cred).text
