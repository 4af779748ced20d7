"""The device security log (CRA Annex I) on the real server (SQLite and PostgreSQL): agents' security events are
stored through the report path, listed a page at a time per device and per tenant, counted in the device detail and
in /metrics; malformed ones are refused with a 4xx and nothing of their report is stored; an integrity failure is
delivered once to a real webhook receiver."""

from __future__ import annotations

import json
from typing import Any

import httpx

from bulkhead.protocol import MAX_SECURITY_MESSAGE, SecurityEvent
from bulkhead.server.db import Database
from bulkhead.server.models import Device, DeviceEvent, Tenant
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.notifications import NotificationService
from tests.live import LiveServer
from tests.server.test_metrics import _samples, _value
from tests.server.test_notify_job import Clock, Receiver, receiver  # noqa: F401 (the receiver fixture)

REFUSED = "RAUC install failed: signature verification failed: error:1700009E:CMS routines::verification failure"


def _device(c: httpx.Client, name: str) -> dict[str, str]:
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": f"b-{name}"}).json()["token"]
    r = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": name, "compatible": "Test Config"})
    assert r.status_code in (200, 201), r.text
    return {"authorization": f"Bearer {r.json()['credential']}"}


def _sec(seq: int, event: str, message: str = "m", release_id: int | None = None, **details: Any) -> dict[str, Any]:
    return {
        "seq": seq, "kind": "security", "phase": None, "release_id": release_id,
        "details": {"event": event, "message": message, **details}, "at": "2026-12-01T10:00:00+00:00",
    }  # fmt: skip


def _report(c: httpx.Client, auth: dict[str, str], *events: dict[str, Any]) -> httpx.Response:
    return c.post("/device/v1/reports", json={"events": list(events)}, headers=auth)


def test_security_events_are_stored_listed_paged_and_counted(server: LiveServer) -> None:
    with server.client(server.tenant(keyring=False)) as c:
        a, b = _device(c, "sec-a"), _device(c, "sec-b")
        update = {"seq": 1, "kind": "update", "phase": "downloading", "release_id": None, "details": {}}
        r = _report(c, a, update, _sec(2, "signature_refused", REFUSED, version="2.0"), _sec(3, "credential_rejected"))
        assert r.status_code == 200 and r.json() == {"accepted_seq": 3}, r.text
        assert _report(c, b, _sec(1, "unexpected_slot_change", slot="B", expected_slot="A")).status_code == 200
        # A retried batch (the agent did not hear the answer) is not stored twice.
        assert _report(c, a, _sec(2, "signature_refused", REFUSED, version="2.0")).json() == {"accepted_seq": 3}

        mine = c.get("/api/v1/devices/sec-a/security-events")
        assert mine.status_code == 200, mine.text
        assert [(e["kind"], e["seq"]) for e in mine.json()] == [("credential_rejected", 3), ("signature_refused", 2)]
        refused = mine.json()[1]
        assert refused["device"] == "sec-a" and refused["integrity"] is True and refused["message"] == REFUSED
        assert refused["version"] == "2.0" and refused["device_time"].startswith("2026-12-01T10:00:00")
        assert mine.json()[0]["integrity"] is False

        everyone = c.get("/api/v1/security-events", params={"limit": 2})
        assert [e["device"] for e in everyone.json()] == ["sec-b", "sec-a"]
        assert everyone.json()[0]["details"] == {"slot": "B", "expected_slot": "A"}
        rest = c.get("/api/v1/security-events", params={"limit": 2, "cursor": everyone.headers["x-next-cursor"]})
        assert [e["kind"] for e in rest.json()] == ["signature_refused"] and "x-next-cursor" not in rest.headers
        only = c.get("/api/v1/security-events", params={"kind": "signature_refused"}).json()
        assert [e["device"] for e in only] == ["sec-a"]
        bad = c.get("/api/v1/security-events", params={"kind": "nonsense"})
        assert bad.status_code == 400 and bad.json()["error"] and "signature_refused" in bad.json()["message"]
        assert c.get("/api/v1/devices/nobody/security-events").status_code == 404
        # The device's update history still has the update event; the security log has only security events.
        assert len(c.get("/api/v1/devices/sec-a/events").json()) == 3

        detail = c.get("/api/v1/devices/sec-a").json()
        assert detail["security_events"] == {"signature_refused": 1, "credential_rejected": 1}
        assert c.get("/api/v1/devices/sec-b").json()["security_events"] == {"unexpected_slot_change": 1}

        seen = _samples(c.get("/metrics").text)
        tenant = next(dict(labels)["tenant"] for (name, labels) in seen if name == "bulkhead_device_security_events")
        assert _value(seen, "bulkhead_device_security_events", tenant=tenant, kind="signature_refused") == 1
        assert _value(seen, "bulkhead_device_security_events", tenant=tenant, kind="unexpected_slot_change") == 1

    with server.client(server.tenant(keyring=False)) as other:  # another tenant sees none of them
        assert other.get("/api/v1/security-events").json() == []
        assert other.get("/api/v1/devices/sec-a/security-events").status_code == 404


def test_malformed_security_events_are_refused_and_nothing_is_stored(server: LiveServer) -> None:
    with server.client(server.tenant(keyring=False)) as c:
        auth = _device(c, "sec-bad")
        ok = {"seq": 1, "kind": "agent", "phase": None, "release_id": None, "details": {"event": "enrolled"}}
        for bad, words in [
            (_sec(2, "made_up"), "details.event must be one of"),
            ({**_sec(2, "signature_refused"), "phase": "failure"}, "has no phase"),
            (_sec(2, "signature_refused", "x" * (MAX_SECURITY_MESSAGE + 1)), "at most"),
            (_sec(2, "signature_refused", 42), "must be text"),  # type: ignore[arg-type]
            ({**_sec(2, "signature_refused"), "details": {"message": "no kind"}}, "details.event"),
        ]:
            r = _report(c, auth, ok, bad)
            assert 400 <= r.status_code < 500, r.text
            assert r.json()["error"] and words in r.json()["message"], r.json()
        assert c.get("/api/v1/security-events").json() == []
        assert c.get("/api/v1/devices/sec-bad/events").json() == []  # not even the good event of those reports
        assert c.get("/api/v1/devices/sec-bad").json()["security_events"] == {}
        for kind in SecurityEvent:  # every kind the agent sends is taken
            assert _report(c, auth, _sec(list(SecurityEvent).index(kind) + 1, kind)).status_code == 200
        assert len(c.get("/api/v1/security-events").json()) == len(SecurityEvent)


def test_an_integrity_failure_is_delivered_once(db: Database, receiver: Receiver) -> None:  # noqa: F811
    with db.session() as s:
        t = Tenant(name="acme")
        s.add(t)
        s.flush()
        dev = Device(tenant_id=t.id, name="d1", compatible="board")
        s.add(dev)
        s.flush()
        tid, did = t.id, dev.id
    admin = Principal(kind="user", name="ada", tenant_id=tid, tenant="acme", role="admin")
    svc = NotificationService(db, clock=Clock())
    integrity = svc.add(admin, "webhook", receiver.url + "/integrity", ["device.integrity_failure"])
    svc.add(admin, "webhook", receiver.url + "/all", ["device.security_event", "device.integrity_failure"])
    svc.add(admin, "webhook", receiver.url + "/rollbacks", ["device.rolled_back"])
    with db.session() as s:
        s.add(DeviceEvent(tenant_id=tid, device_id=did, seq=1, kind="security",
                          details={"event": "signature_refused", "message": REFUSED, "version": "2.0"}))  # fmt: skip
        s.add(DeviceEvent(tenant_id=tid, device_id=did, seq=2, kind="security", details={"event": "credential_rejected"}))
        s.add(DeviceEvent(tenant_id=tid, device_id=did, seq=3, kind="update", phase="failure", details={}))
    svc.run()
    svc.run()  # read again (the cursor lags): nothing sent twice
    by_path: dict[str, list[dict[str, Any]]] = {}
    for r in receiver.got:
        by_path.setdefault(r["path"], []).append(json.loads(r["body"]))
    [one] = by_path["/integrity"]
    assert one["kind"] == "device.integrity_failure" and one["data"]["device"] == "d1"
    assert one["data"]["event"] == "signature_refused" and one["data"]["release"] == "2.0"
    assert "signature verification failed" in one["summary"]
    # A subscription to both kinds hears each event once: the integrity failure and the rejected credential.
    assert sorted(p["data"]["event"] for p in by_path["/all"]) == ["credential_rejected", "signature_refused"]
    assert "/rollbacks" not in by_path
    [d] = svc.deliveries(admin, integrity["id"])
    assert d["state"] == "delivered"
