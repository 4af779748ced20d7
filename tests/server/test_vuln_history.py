"""The exposure history (services/vuln_history.py): thinning to a plot's points, and samples kept only when the
summary moved (on SQLite and PostgreSQL: the `db` fixture)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from bulkhead.server.db import Database
from bulkhead.server.models import Tenant
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.vuln_history import Sample, history, record, thin
from bulkhead.server.vuln_models import VulnFinding, VulnProfile, VulnScanRun
from bulkhead.server.vuln_state_models import VulnExposureSample, VulnProfileGroups

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _s(minutes: int, devices: int) -> Sample:
    return Sample(T0 + dt.timedelta(minutes=minutes), "scan", 1, 0, devices, {})


def test_thin_keeps_the_last_sample_of_each_step() -> None:
    few = [_s(i, i) for i in range(5)]
    assert thin(few, T0, T0 + dt.timedelta(minutes=10)) == few
    many = [_s(i, i) for i in range(100)]
    kept = thin(many, T0, T0 + dt.timedelta(minutes=100), most=10)
    assert [x.devices for x in kept] == [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]


def test_a_sample_is_kept_only_when_the_exposure_moved(db: Database) -> None:
    with db.session() as s:
        t = Tenant(name="h")
        s.add(t)
        s.flush()
        tid = t.id
        assert record(s, tid, "scan 1 (full)"), "the first sample (nothing exposed) is kept"
        assert not record(s, tid, "scan 2 (full)"), "unchanged: not kept"
    with db.session() as s:
        run = VulnScanRun(tenant_id=tid, kind="full", actor="test")
        s.add(run)
        p = VulnProfile(tenant_id=tid, compatible="board", os_version="1", inventory_sha256="", inventory={})
        s.add(p)
        s.flush()
        s.add(VulnProfileGroups(tenant_id=tid, profile_id=p.id, groups="[]", devices=7))
        s.add(
            VulnFinding(
                tenant_id=tid, profile_id=p.id, compatible="board", component="c", component_version="1",
                cve="CVE-2024-0001", status="affected", matcher_status="affected", severity="critical",
                severity_rank=4, kev=True, source="test", reason="test", run_id=run.id,
            )
        )  # fmt: skip
        assert record(s, tid, "vex")
    with db.session() as s:
        rows = s.execute(select(VulnExposureSample.cause, VulnExposureSample.devices, VulnExposureSample.by_severity)).all()
        assert rows == [("scan 1 (full)", 0, {}), ("vex", 7, {"critical": 1})]
        who = Principal("user", "v", tid, "h", "viewer")
        before, samples = history(s, who, T0, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
        assert before is None and [x.cause for x in samples] == ["scan 1 (full)", "vex"]
        before, samples = history(s, who, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), dt.datetime.now(dt.UTC))
        assert before is not None and before.cause == "vex" and samples == []
