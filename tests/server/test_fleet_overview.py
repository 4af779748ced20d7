"""The web UI overview's aggregate counts (services/fleet_overview.py), on both databases."""

from __future__ import annotations

import datetime as dt

import pytest

from bulkhead.server.db import Database
from bulkhead.server.errors import Forbidden
from bulkhead.server.models import Device
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.fleet_overview import overview
from bulkhead.server.services.tenants import TenantService

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def test_devices_by_state_versions_per_compatible_and_tenant_scope(db: Database) -> None:
    tenants = TenantService(db)
    acme = tenants.create_tenant(Principal("system", "admin"), "acme")["id"]
    other = tenants.create_tenant(Principal("system", "admin"), "other")["id"]
    rows = [
        ("a", "board-a", "active", "1.0", NOW - dt.timedelta(minutes=1)),
        ("b", "board-a", "active", "1.1", NOW - dt.timedelta(minutes=2)),
        ("c", "board-a", "active", "1.1", NOW - dt.timedelta(hours=3)),
        ("d", "board-b", "pending", None, None),
        ("e", "board-b", "disabled", "2.0", NOW - dt.timedelta(days=2)),
    ]
    with db.session() as s:
        for name, compatible, status, version, seen in rows:
            s.add(Device(tenant_id=acme, name=name, compatible=compatible, status=status, os_version=version, last_seen=seen))
        s.add(Device(tenant_id=other, name="x", compatible="board-a", status="active", os_version="9", last_seen=NOW))
    viewer = Principal("user", "v", acme, "acme", "viewer")
    with db.session() as s:
        got = overview(s, viewer, NOW)
    assert got.total == 5 and got.by_status == {"active": 3, "pending": 1, "disabled": 1}
    assert (got.online, got.offline) == (2, 3)
    assert got.versions == {"board-a": [("1.1", 2), ("1.0", 1)], "board-b": [(None, 1), ("2.0", 1)]} or got.versions == {
        "board-a": [("1.1", 2), ("1.0", 1)],
        "board-b": [("2.0", 1), (None, 1)],
    }
    assert got.rollouts == [] and got.updates == {}
    with db.session() as s, pytest.raises(Forbidden):
        overview(s, Principal("device", "a", acme, "acme", "device", 1), NOW)
