"""Fleet exposure of a CVE per member state: the device attribute `country` (ISO 3166-1 alpha-2) counted over the
scans' device mapping, "unknown" for devices without one (or with a value that is no country code)."""

from __future__ import annotations

import uuid
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import event, insert, select

from bulkhead.server.db import Database
from bulkhead.server.models import Device, Tenant
from bulkhead.server.services.vuln_exposure import cve_exposure
from bulkhead.server.services.vuln_scan import Scanner
from bulkhead.server.vuln_models import VulnFinding, VulnProfile, VulnScanRun
from tests.server.conftest import LiveServer
from tests.server.test_schemas import Checker
from tests.server.test_vulns import _feeds, checked
from tests.server.vuln_fixtures import DEBIAN, OLD_SSL, Lab, debian_sbom, make_lab, release, report, scan

CVE = "CVE-2024-5535"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("member-states"))


@pytest.fixture(scope="module")
def checker(server: LiveServer) -> Checker:
    return Checker(httpx.get(server.url + "/openapi.json").json())


def _enroll(c: httpx.Client, attributes: dict[str, str], name: str | None = None) -> tuple[str, dict[str, str]]:
    """A device enrolled with its attributes (as the agent sends them from its configuration)."""
    name = name or f"d-{uuid.uuid4().hex[:8]}"
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": f"b-{uuid.uuid4().hex[:6]}", "group": "field"}).json()
    r = c.post(
        "/device/v1/enroll",
        json={"bootstrap_token": boot["token"], "name": name, "compatible": DEBIAN, "attributes": attributes},
    )
    assert r.status_code == 201, r.text
    return name, {"authorization": f"Bearer {r.json()['credential']}"}


def _countries(c: httpx.Client) -> dict[str, Any]:
    r = c.get(f"/api/v1/vulnerabilities/{CVE}")
    assert r.status_code == 200, r.text
    exposure: dict[str, Any] = r.json()["exposure"]
    assert sum(exposure["countries"].values()) == exposure["devices"]
    return dict(exposure["countries"])


def test_exposure_is_broken_down_by_member_state(server: LiveServer, lab: Lab, checker: Checker) -> None:
    with checked(server, checker, server.tenant(ca=lab.pki.ca)) as c:
        _feeds(server, lab)
        release(c, lab, DEBIAN, "1", debian_sbom(OLD_SSL))
        devices = {}
        for attributes in ({"country": "DE"}, {"country": "de"}, {"country": "FR", "site": "lyon"}, {},
                           {"country": "Germany"}):  # fmt: skip
            name, auth = _enroll(c, attributes)
            report(c, name, auth, "1")
            devices[name] = auth
        scan(c)
        assert _countries(c) == {"DE": 2, "FR": 1, "unknown": 2}  # no attribute, and a name instead of a code

        # a device whose country changes (here: re-enrolled with new attributes) counts there after the next scan
        moved = next(iter(devices))
        assert c.post(f"/api/v1/devices/{moved}/reset-credential").status_code == 200
        _, auth = _enroll(c, {"country": "AT"}, moved)
        assert scan(c, "devices")["counts"]["devices_mapped"] == 1
        assert _countries(c) == {"AT": 1, "DE": 1, "FR": 1, "unknown": 2}

        # a device no longer exposed (VEX for its whole product here) leaves every count
        r = c.put("/api/v1/vex", json={"compatible": DEBIAN, "cve": CVE, "status": "fixed"})
        assert r.status_code == 201, r.text
        assert _countries(c) == {}


# -- set-based: the breakdown costs the same statements at any fleet size ------------------------------------------


COUNTRIES = ["DE", "FR", "it", "", "Germany"]


def _add_devices(db: Database, tid: int, start: int, n: int) -> None:
    rows = [
        {"tenant_id": tid, "name": f"d{i}", "compatible": "board", "status": "active", "tags": [], "groups": [],
         "attributes": {"country": COUNTRIES[i % len(COUNTRIES)]} if COUNTRIES[i % len(COUNTRIES)] else {},
         "desired": {}, "update_status": {}, "os_version": "1.0"}
        for i in range(start, start + n)
    ]  # fmt: skip
    with db.session() as s:
        s.execute(insert(Device), rows)
        Scanner.map_devices(cast(Any, None), s, tid)  # what a scan does first: every device to its profile


def count_groups(db: Database, tid: int) -> None:
    """What every scan does after mapping devices: count them per profile and group list (exposure reads that)."""
    with db.session() as s:
        Scanner._count_groups(s, tid)


def test_the_breakdown_is_one_grouped_query_whatever_the_fleet_size(db: Database) -> None:
    tenant_name = f"ms-{uuid.uuid4().hex[:6]}"
    with db.session() as s:
        t = Tenant(name=tenant_name)
        s.add(t)
        s.flush()
        tid = t.id
    _add_devices(db, tid, 0, 1000)
    count_groups(db, tid)
    with db.session() as s:
        run = VulnScanRun(tenant_id=tid, kind="full", actor="test", feeds={}, counts={})
        s.add(run)
        s.flush()
        [pid] = s.scalars(select(VulnProfile.id).where(VulnProfile.tenant_id == tid))
        s.add(VulnFinding(tenant_id=tid, profile_id=pid, compatible="board", component="openssl", component_version="3.0",
                          cve=CVE, status="affected", matcher_status="affected", severity="high", severity_rank=3,
                          source="cve5", reason="test", run_id=run.id))  # fmt: skip
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda _c, _cu, statement, *_: seen.append(statement))

    def exposure() -> tuple[dict[str, Any], int]:
        seen.clear()
        with db.session() as s:
            out = cve_exposure(s, tid, CVE)["exposure"]
        return out, len(seen)

    small, statements = exposure()
    assert small["countries"] == {"DE": 200, "FR": 200, "IT": 200, "unknown": 400} and small["devices"] == 1000
    _add_devices(db, tid, 1000, 4000)
    count_groups(db, tid)
    big, statements_big = exposure()
    assert big["countries"] == {"DE": 1000, "FR": 1000, "IT": 1000, "unknown": 2000} and big["devices"] == 5000
    assert statements_big == statements  # no statement per device: the counts come grouped from the database
