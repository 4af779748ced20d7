"""Enrollment with bootstrap tokens: expiry, revocation, approval, and a device sees only its own things."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bulkhead.server.db import Database
from bulkhead.server.errors import Conflict
from bulkhead.server.models import BootstrapToken, Device, Tenant
from bulkhead.server.security import hash_token
from bulkhead.server.services.devices import DeviceService
from tests.server.conftest import LiveServer


def enroll(c, token: str, name: str, compatible: str = "Test Config"):  # type: ignore[no-untyped-def]
    return c.post("/device/v1/enroll", json={"bootstrap_token": token, "name": name, "compatible": compatible})


def test_enroll_tag_and_list(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "line-1", "group": "factory"}).json()
        r = enroll(c, boot["token"], "sensor-1")
        assert r.status_code == 201 and r.json()["status"] == "active" and r.json()["credential"].startswith("bhd_")
        dev = c.post("/api/v1/devices/sensor-1/tags", json={"add": ["eu", "beta"]}).json()
        assert dev["tags"] == ["beta", "eu"] and dev["groups"] == ["factory"]
        assert [d["name"] for d in c.get("/api/v1/devices", params={"tag": "eu"}).json()] == ["sensor-1"]


def test_revoked_and_expired_and_used_up_tokens(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        revoked = c.post("/api/v1/bootstrap-tokens", json={"name": "r"}).json()
        c.delete(f"/api/v1/bootstrap-tokens/{revoked['id']}").raise_for_status()
        r = enroll(c, revoked["token"], "a")
        assert r.status_code == 401 and "revoked" in r.json()["message"]
        expired = c.post("/api/v1/bootstrap-tokens", json={"name": "e", "expires_in_hours": 0.0000001}).json()
        r = enroll(c, expired["token"], "b")
        assert r.status_code == 401 and "expired" in r.json()["message"]
        once = c.post("/api/v1/bootstrap-tokens", json={"name": "o", "max_uses": 1}).json()
        assert enroll(c, once["token"], "c").status_code == 201
        r = enroll(c, once["token"], "d")
        assert r.status_code == 401 and "used up" in r.json()["message"]
        assert [d["name"] for d in c.get("/api/v1/devices").json()] == ["c"]


def test_approval_required(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "gate", "requires_approval": True}).json()
        cred = enroll(c, boot["token"], "pending-1").json()
        assert cred["status"] == "pending"
    with server.client(cred["credential"]) as d:
        r = d.get("/device/v1/state")
        assert r.status_code == 403 and "approve" in r.json()["message"]
    with server.client(admin) as c:
        assert c.post("/api/v1/devices/pending-1/approve").json()["status"] == "active"
    with server.client(cred["credential"]) as d:
        # the credential cache holds the old status for up to 10 s; the state endpoint reads the row
        assert d.get("/device/v1/state").status_code == 200


def test_device_cannot_use_management_api(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()
        cred = enroll(c, boot["token"], "x1").json()["credential"]
    with server.client(cred) as d:
        r = d.get("/api/v1/devices")
        assert r.status_code == 403 and "not devices" in r.json()["message"]


def test_bad_enrollment_input(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()
        r = enroll(c, boot["token"], "bad name with spaces")
        assert r.status_code == 400 and "invalid" in r.json()["message"]
        r = c.post("/device/v1/enroll", json={"name": "x"})
        assert r.status_code == 422 and "compatible" in r.json()["message"]
        r = c.post("/device/v1/enroll", json={"name": "x", "compatible": "c"})  # neither token nor previous credential
        assert r.status_code == 422 and "bootstrap_token" in r.json()["message"]
        assert c.get("/api/v1/devices").json() == []


def test_a_bootstrap_token_made_before_group_names_were_checked_enrolls_nobody(db: Database) -> None:
    """A legacy token naming a group no URL can address: its enrollment is refused with what to do, nothing changes."""
    with db.session() as s:
        t = Tenant(name="t")
        s.add(t)
        s.flush()
        s.add(BootstrapToken(tenant_id=t.id, name="legacy", token_hash=hash_token("bhb_legacy"), group_name="line 3/a"))
        s.add(BootstrapToken(tenant_id=t.id, name="fine", token_hash=hash_token("bhb_fine"), group_name="line-3"))
    svc = DeviceService(db, b"k" * 32)
    with pytest.raises(Conflict, match=r"bootstrap token 'legacy' puts devices into group 'line 3/a'.*revokes it"):
        svc.enroll("bhb_legacy", "d1", "board", {})
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Device)) == 0
        assert s.scalar(select(BootstrapToken.uses).where(BootstrapToken.name == "legacy")) == 0
    assert svc.enroll("bhb_fine", "d1", "board", {})["status"] == "active"
    with db.session() as s:
        assert s.scalars(select(Device.groups)).one() == ["line-3"]
