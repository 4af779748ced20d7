"""The CRA services read the time from one injectable clock: a test moves it and sees deadlines pass, support periods
end and retention run out, without sleeping (the services over a real, migrated SQLite database)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bulkhead.server.db import Database, migrate
from bulkhead.server.errors import Conflict
from bulkhead.server.models import AuditEvent, Device, Release, Tenant
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.cra_cases import CaseService
from bulkhead.server.services.cra_products import ProductService
from bulkhead.server.services.keyset import Page
from bulkhead.server.services.vuln_kev import KEV_EVENT

START = dt.datetime(2026, 9, 14, 8, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def env(tmp_path: Path) -> tuple[Database, Principal, Clock]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    db = Database(url)
    with db.session() as s:
        t = Tenant(name="acme")
        s.add(t)
        s.flush()
        tid = t.id
    return db, Principal(kind="user", name="op", tenant_id=tid, tenant="acme", role="operator"), Clock()


def test_deadlines_pass_as_the_clock_moves(env: tuple[Database, Principal, Clock]) -> None:
    db, op, clock = env
    cases = CaseService(db, clock)
    with db.session() as s:  # what vuln_kev writes when a CVE affecting the tenant becomes known exploited
        s.add(AuditEvent(tenant_id=op.tenant_id, actor="system:vuln-jobs", action=KEV_EVENT, subject="CVE-2024-36971",
                         details={"devices": 3, "releases": ["1"], "kev_date_added": "2024-08-07"}))  # fmt: skip
    [case] = cases.list_cases(op, None, Page()).items
    assert case["suggested_awareness_at"] == START.isoformat() and case["state"] == "awareness_pending"

    clock.now = START + dt.timedelta(hours=2)
    confirmed = cases.confirm(op, case["id"], None)  # the suggested time, two hours ago
    assert confirmed["deadlines"]["early_warning"] == (START + dt.timedelta(hours=24)).isoformat()
    assert confirmed["overdue"] == []
    clock.now = START + dt.timedelta(hours=25)
    assert cases.show(op, case["id"])["overdue"] == ["early_warning"]
    clock.now = START + dt.timedelta(hours=73)
    assert cases.show(op, case["id"])["overdue"] == ["early_warning", "notification"]
    cases.submit(op, case["id"], "early_warning", "SRP-1", None)
    assert cases.show(op, case["id"])["overdue"] == ["notification"]
    with pytest.raises(Conflict, match="cannot take 'final_report'"):
        cases.submit(op, case["id"], "final_report", "SRP-9", None)


def test_support_ends_and_retention_runs_out_as_the_clock_moves(env: tuple[Database, Principal, Clock]) -> None:
    db, op, clock = env
    products = ProductService(db, retention_years=10, warn_days=180, clock=clock)
    products.set(op, "gw", "Gateway", "Acme", dt.date(2027, 6, 30))
    assert products.show(op, "gw")["support"]["ending_soon"] is False
    clock.now = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    assert products.show(op, "gw")["support"]["ending_soon"] is True
    clock.now = dt.datetime(2027, 7, 1, tzinfo=dt.UTC)
    assert products.show(op, "gw")["support"]["ended"] is True

    with db.session() as s:
        rel = Release(tenant_id=op.tenant_id, compatible="gw", version="1", format="plain", sha256="0" * 64, size=1, info={})
        s.add(rel)
        s.add(Device(tenant_id=op.tenant_id, name="d", compatible="gw", os_version="1", last_seen=START))
        s.flush()
        with pytest.raises(Conflict, match="retained until 2037-06-30"):  # 10 years after the support end
            products.check_delete(s, rel)
        clock.now = dt.datetime(2037, 7, 1, tzinfo=dt.UTC)
        products.check_delete(s, rel)  # retention over: may go
