"""The device security log end to end (CRA Annex I): a lab device (real RAUC service, real agent) is offered a
tampered bundle, RAUC refuses its signature, the agent reports a security event, the server lists and counts it, and
the server's own notification job sends `device.integrity_failure` to a real webhook receiver, once.

The server verifies a bundle's signature at upload, so the tampering happens after it: the stored artifact is
replaced by a copy with one payload byte flipped, and the release's recorded sha256 with the copy's (an attacker who
controls the server's store and database, or a corrupted store that was "repaired"). The agent's own sha256 check
then passes: only RAUC's signature check stands between the device and the tampered image.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import sqlite3
import struct
from typing import Any

from tests.e2e.conftest import Fleet, build_release
from tests.server.test_notify_job import Receiver


def _tamper(fleet: Fleet, release: dict[str, Any]) -> str:
    """Flip one byte of the stored bundle's squashfs payload; point the release at the copy. Returns its sha256."""
    artifacts = fleet.server.data_dir / "artifacts"
    old = artifacts / release["sha256"][:2] / release["sha256"]
    data = bytearray(old.read_bytes())
    payload = len(data) - 8 - struct.unpack(">Q", data[-8:])[0]  # a plain bundle: squashfs, CMS signature, its size
    data[payload // 2] ^= 0xFF
    sha = hashlib.sha256(data).hexdigest()
    new = artifacts / sha[:2] / sha
    new.parent.mkdir(exist_ok=True)
    new.write_bytes(bytes(data))
    with sqlite3.connect(fleet.server.data_dir / "bulkhead.db") as db:
        assert db.execute("UPDATE releases SET sha256 = ? WHERE id = ?", (sha, release["id"])).rowcount == 1
    return sha


def test_a_tampered_bundle_is_refused_reported_listed_and_notified(fleet: Fleet) -> None:
    receiver = Receiver()
    try:
        with fleet.api() as c:
            r = c.post(
                "/api/v1/notifications/subscriptions",
                json={"channel": "webhook", "target": receiver.url + "/hook", "events": ["device.integrity_failure"]},
            )
            assert r.status_code == 201, r.text
            secret = r.json()["secret"]
        v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
        tampered = _tamper(fleet, v2)
        dev = fleet.device("cam-1", initial_version="1.0")
        fleet.wait(lambda: fleet.show("cam-1")["reported"].get("rauc"), 60, "inventory")
        with fleet.api() as c:
            c.put("/api/v1/devices/cam-1/desired-release", json={"release_id": v2["id"]}).raise_for_status()

        up = fleet.wait(
            lambda: fleet.show("cam-1")["update"].get("phase") == "failure" and fleet.show("cam-1")["update"], 120, "refusal"
        )
        assert "signature verification failed" in up["reason"]
        with fleet.api() as c:  # it was downloaded whole: its sha256 matched the (changed) record; RAUC refused it
            phases = [e["phase"] for e in c.get("/api/v1/devices/cam-1/events").json() if e["kind"] == "update"]
            assert "downloading" in phases and "installing" in phases
        assert dev.booted == "A" and dev.boots == 1  # nothing was installed, nothing rebooted
        assert '"2.0"' not in dev.rauc.rauc("status", "--detailed", "--output-format=json").stdout

        def logged() -> list[dict[str, Any]]:
            with fleet.api() as c:
                rows: list[dict[str, Any]] = c.get("/api/v1/devices/cam-1/security-events").json()
                return rows

        [event] = fleet.wait(logged, 30, "the security event")
        assert event["kind"] == "signature_refused" and event["integrity"] is True
        assert event["release_id"] == v2["id"] and event["version"] == "2.0"
        assert "signature verification failed" in event["message"] and "CMS" in event["message"]
        assert event["device_time"] and event["details"] == {"artifact": "full", "sha256": tampered, "version": "2.0"}
        with fleet.api() as c:
            assert [e["id"] for e in c.get("/api/v1/security-events").json()] == [event["id"]]
            assert c.get("/api/v1/devices/cam-1").json()["security_events"] == {"signature_refused": 1}
            assert 'bulkhead_device_security_events{kind="signature_refused"' in c.get("/metrics").text

        # The server's notification job (every minute, in the server process) sends it to the subscriber.
        [got] = fleet.wait(lambda: receiver.got, 150, "the integrity-failure webhook")
        expected = "sha256=" + hmac.new(secret.encode(), got["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(got["headers"]["X-Bulkhead-Signature"], expected)
        payload = json.loads(got["body"])
        assert payload["kind"] == "device.integrity_failure" and payload["data"]["device"] == "cam-1"
        assert payload["data"]["event"] == "signature_refused" and payload["data"]["release"] == "2.0"
        assert "signature verification failed" in payload["summary"]
        with fleet.api() as c:
            [delivery] = c.get("/api/v1/notifications/deliveries").json()
            assert delivery["state"] == "delivered" and delivery["event_kind"] == "device.integrity_failure"
        assert tampered != v2["sha256"] and len(receiver.got) == 1
    finally:
        receiver.httpd.shutdown()
        receiver.httpd.server_close()


def test_a_bundle_changed_in_the_store_is_reported_as_a_tampered_download(fleet: Fleet) -> None:
    """The stored bytes change and the record does not (a corrupted or swapped store): the agent's sha256 check
    refuses the download before RAUC sees it, and reports `tampered_bundle` once, though it keeps trying."""
    v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
    stored = fleet.server.data_dir / "artifacts" / v2["sha256"][:2] / v2["sha256"]
    data = bytearray(stored.read_bytes())
    data[len(data) // 4] ^= 0xFF
    stored.chmod(0o644)
    stored.write_bytes(bytes(data))
    dev = fleet.device("cam-2", initial_version="1.0")
    fleet.wait(lambda: fleet.show("cam-2")["reported"].get("rauc"), 60, "inventory")
    with fleet.api() as c:
        c.put("/api/v1/devices/cam-2/desired-release", json={"release_id": v2["id"]}).raise_for_status()

    def logged() -> list[dict[str, Any]]:
        with fleet.api() as c:
            rows: list[dict[str, Any]] = c.get("/api/v1/security-events", params={"kind": "tampered_bundle"}).json()
            return rows

    [event] = fleet.wait(logged, 120, "the tampered-download event")
    assert event["device"] == "cam-2" and event["integrity"] is True and event["release_id"] == v2["id"]
    assert "do not match sha256" in event["message"] and v2["sha256"] in event["message"]

    def downloads() -> int:
        with fleet.api() as c:
            events = c.get("/api/v1/devices/cam-2/events", params={"limit": 1000}).json()
            return sum(1 for e in events if e["phase"] == "downloading" and e["details"].get("progress") == 100)

    tried = downloads()
    fleet.wait(lambda: downloads() >= tried + 2, 60, "another download attempt")  # it keeps trying...
    with fleet.api() as c:  # ...and said it once
        assert c.get("/api/v1/devices/cam-2").json()["security_events"] == {"tampered_bundle": 1}
    assert dev.booted == "A" and dev.boots == 1


def test_a_rejected_credential_and_a_slot_switch_behind_the_agents_back_are_logged(fleet: Fleet) -> None:
    dev = fleet.device("cam-3", initial_version="1.0")
    fleet.wait(lambda: fleet.show("cam-3")["reported"].get("rauc"), 60, "inventory")
    with fleet.api() as c:  # an operator revokes the device's credential: its next poll gets 401, then it enrolls again
        c.post("/api/v1/devices/cam-3/reset-credential").raise_for_status()

    def kinds() -> list[str]:
        with fleet.api() as c:
            return [e["kind"] for e in c.get("/api/v1/devices/cam-3/security-events").json()]

    assert fleet.wait(lambda: kinds() == ["credential_rejected"], 60, "the rejected credential")
    [rejected] = fleet.api().get("/api/v1/devices/cam-3/security-events").json()
    assert "401" in rejected["message"] and rejected["integrity"] is False

    # Someone makes the other slot primary with RAUC itself and reboots: no update of the agent's asked for it.
    dev.rauc.rauc("status", "mark-active", "other")
    assert dev.reboot() == "B"
    fleet.wait(lambda: kinds() == ["unexpected_slot_change", "credential_rejected"], 60, "the slot change")
    switched = fleet.api().get("/api/v1/devices/cam-3/security-events").json()[0]
    assert switched["details"]["slot"] == "B" and switched["details"]["expected_slot"] == "A"
    rebooted = dt.datetime.now(dt.UTC)
    assert dev.reboot() == "B"  # B again: now the known slot, nothing more to say
    later = rebooted + dt.timedelta(seconds=3)  # passes after the boot's first one (each flushes what it reported)
    fleet.wait(lambda: dt.datetime.fromisoformat(fleet.show("cam-3")["last_seen"]) > later, 60, "passes after the boot")
    assert len(kinds()) == 2 and dev.boots == 3
