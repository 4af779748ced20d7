"""Device metrics and alerts (services/device_metrics.py, services/alerts.py) over a real, migrated database (SQLite
and PostgreSQL): samples stored once, hourly averages and retention, alert rules firing once per episode and
resolving, offline alerts, and a metrics alert reaching a real webhook receiver through the notification job."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bulkhead.server.db import Database, migrate
from bulkhead.server.errors import Forbidden, Invalid, NotFound
from bulkhead.server.metric_models import DeviceMetric
from bulkhead.server.models import AuditEvent, BootstrapToken, Device, DeviceGroup, Tenant, utcnow
from bulkhead.server.services.alerts import AlertService
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.device_metrics import HOUR, MetricsService
from bulkhead.server.services.notifications import NotificationService
from tests.server.conftest import pg_url
from tests.server.test_notify_job import Receiver, receiver  # noqa: F401 (the fixture)

GIB = 2**30


class Fleet:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.alerts = AlertService(db)
        self.metrics = MetricsService(db, self.alerts, raw_hours=48, retention_days=90)
        with db.session() as s:
            t = Tenant(name="acme")
            s.add(t)
            s.flush()
            s.add(DeviceGroup(tenant_id=t.id, name="line-1"))
            boot = BootstrapToken(tenant_id=t.id, name="factory", token_hash="0" * 64)
            s.add(boot)
            s.flush()
            self.tid, self.boot = t.id, boot.id
        self.admin = Principal(kind="user", name="ada", tenant_id=self.tid, tenant="acme", role="admin")
        self.viewer = Principal(kind="user", name="vic", tenant_id=self.tid, tenant="acme", role="viewer")

    def device(self, name: str, groups: list[str] | None = None) -> Principal:
        with self.db.session() as s:
            d = Device(
                tenant_id=self.tid, name=name, compatible="c", groups=groups or [], enrolled_with=self.boot, last_seen=utcnow()
            )
            s.add(d)
            s.flush()
            return Principal(kind="device", name=name, tenant_id=self.tid, device_id=d.id, device_status="active")

    def audit(self, action: str) -> list[AuditEvent]:
        with self.db.read() as s:
            return [e for e in s.query(AuditEvent).filter(AuditEvent.action == action).order_by(AuditEvent.id)]


def sample(at: dt.datetime, disk_used: float = 10, **extra: Any) -> dict[str, Any]:
    return {
        "at": at,
        "disk_used": int(disk_used * GIB),
        "disk_total": 100 * GIB,
        "cpu_percent": 5.0,
        "net_rx_bytes": 1000,
        **extra,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite" else pg_url()
    migrate(url)
    db = Database(url)
    yield Fleet(db)
    db.dispose()


def test_samples_are_stored_once_and_read_back_in_order(fleet: Fleet) -> None:
    dev = fleet.device("d1")
    now = utcnow().replace(microsecond=0)
    batch = [sample(now - dt.timedelta(minutes=2)), sample(now - dt.timedelta(minutes=1), temperature_c=51.5)]
    assert fleet.metrics.ingest(dev, batch) == {"accepted": 2}
    fleet.metrics.ingest(dev, batch)  # the answer was lost: sent again
    series = fleet.metrics.series(fleet.viewer, "d1", now - dt.timedelta(hours=1), None)
    assert [r["at"] for r in series] == [(now - dt.timedelta(minutes=m)).isoformat() for m in (2, 1)]
    assert series[1]["temperature_c"] == 51.5 and series[0]["temperature_c"] is None and series[0]["disk_used"] == 10 * GIB


def test_bad_samples_are_refused_and_change_nothing(fleet: Fleet) -> None:
    dev = fleet.device("d1")
    now = utcnow()
    with pytest.raises(Invalid, match="not within the last 7 days"):
        fleet.metrics.ingest(dev, [sample(now), sample(now - dt.timedelta(days=9))])
    with pytest.raises(Invalid, match="not within the last 7 days"):
        fleet.metrics.ingest(dev, [sample(now + dt.timedelta(hours=1))])
    with pytest.raises(Forbidden, match="for devices"):
        fleet.metrics.ingest(fleet.admin, [sample(now)])
    assert fleet.metrics.series(fleet.viewer, "d1", now - dt.timedelta(days=30), None) == []


def test_old_samples_become_hourly_averages_and_expire(fleet: Fleet) -> None:
    dev = fleet.device("d1")
    now = utcnow()
    hour = (now - dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    with fleet.db.session() as s:  # three days old: sent by a device while the server kept them (inserted as stored)
        for minute, used, rx in ((5, 10, 100), (25, 20, 200), (45, 30, 300)):
            s.add(DeviceMetric(tenant_id=fleet.tid, device_id=dev.device_id, resolution=0, at=hour + dt.timedelta(minutes=minute),
                               disk_used=used * GIB, disk_total=100 * GIB, cpu_percent=float(used), net_rx_bytes=rx))  # fmt: skip
        s.add(
            DeviceMetric(
                tenant_id=fleet.tid, device_id=dev.device_id, resolution=HOUR, at=now - dt.timedelta(days=100), cpu_percent=1.0
            )
        )
    fleet.metrics.ingest(dev, [sample(now)])
    assert fleet.metrics.run(now) == {"fired": 0, "hours": 1, "dropped": 1}
    series = fleet.metrics.series(fleet.viewer, "d1", now - dt.timedelta(days=200), None)
    assert [(r["resolution"], r["at"]) for r in series] == [(HOUR, hour.isoformat()), (0, now.isoformat())]
    averaged = series[0]
    assert (averaged["disk_used"], averaged["cpu_percent"], averaged["net_rx_bytes"]) == (
        20 * GIB,
        20.0,
        300,
    )  # counters: the last
    assert fleet.metrics.run(now) == {"fired": 0, "hours": 0, "dropped": 0}  # nothing left to do


def test_a_rule_fires_once_per_episode_and_resolves(fleet: Fleet) -> None:
    dev, other = fleet.device("d1", ["line-1"]), fleet.device("d2")
    fleet.alerts.add(fleet.admin, "disk-full", "disk_percent", 90, None)
    fleet.alerts.add(fleet.admin, "hot-line", "temperature_c", 70, "line-1")
    now = utcnow()
    fleet.metrics.ingest(dev, [sample(now - dt.timedelta(minutes=3), 50)])
    assert fleet.audit("alert.fired") == []
    fleet.metrics.ingest(dev, [sample(now - dt.timedelta(minutes=2), 95, temperature_c=80.0)])
    fleet.metrics.ingest(dev, [sample(now - dt.timedelta(minutes=1), 96, temperature_c=81.0)])  # still firing: no new event
    fleet.metrics.ingest(other, [sample(now, 10, temperature_c=90.0)])  # not in line-1: the group's rule leaves it out
    fired = fleet.audit("alert.fired")
    assert sorted((e.subject, e.details["alert"], e.details["value"]) for e in fired) == [
        ("d1", "disk-full", 95.0),
        ("d1", "hot-line", 80.0),
    ]
    assert {f["alert"] for f in fleet.alerts.firing(fleet.viewer)} == {"disk-full", "hot-line"}
    fleet.metrics.ingest(dev, [sample(now, 40, temperature_c=60.0)])
    assert {e.details["alert"] for e in fleet.audit("alert.resolved")} == {"disk-full", "hot-line"}
    assert fleet.alerts.firing(fleet.viewer) == []


def test_rules_are_checked_and_owned(fleet: Fleet) -> None:
    with pytest.raises(Invalid, match="percentage"):
        fleet.alerts.add(fleet.admin, "x", "disk_percent", 120, None)
    with pytest.raises(Invalid, match="is not one of"):
        fleet.alerts.add(fleet.admin, "x", "humidity", 1, None)
    with pytest.raises(NotFound, match="group 'nope'"):
        fleet.alerts.add(fleet.admin, "x", "cpu_percent", 90, "nope")
    with pytest.raises(Forbidden, match="operator"):
        fleet.alerts.add(fleet.viewer, "x", "cpu_percent", 90, None)
    fleet.alerts.add(fleet.admin, "x", "cpu_percent", 90, None)
    assert [r["name"] for r in fleet.alerts.rules(fleet.viewer)] == ["x"]
    fleet.alerts.remove(fleet.admin, "x")
    assert fleet.alerts.rules(fleet.viewer) == []


def test_a_device_silent_past_the_threshold_fires_an_offline_alert(fleet: Fleet) -> None:
    fleet.device("quiet")
    fleet.device("chatty")
    with fleet.db.session() as s:
        s.query(Device).filter(Device.name == "quiet").update({"last_seen": utcnow() - dt.timedelta(minutes=30)})
    fleet.alerts.add(fleet.admin, "gone", "offline_minutes", 15, None)
    assert fleet.metrics.run()["fired"] == 1
    assert [e.subject for e in fleet.audit("alert.fired")] == ["quiet"]
    assert fleet.metrics.run()["fired"] == 0  # once per episode
    with fleet.db.session() as s:
        s.query(Device).filter(Device.name == "quiet").update({"last_seen": utcnow()})
    fleet.metrics.run()
    assert [e.subject for e in fleet.audit("alert.resolved")] == ["quiet"]


def test_a_metrics_alert_fires_a_webhook(fleet: Fleet, receiver: Receiver) -> None:  # noqa: F811
    dev = fleet.device("d1")
    notify = NotificationService(fleet.db)
    notify.add(fleet.admin, "webhook", receiver.url + "/alerts", ["device.alert"])
    fleet.alerts.add(fleet.admin, "disk-full", "disk_percent", 90, None)
    fleet.metrics.ingest(dev, [sample(utcnow(), 97)])
    notify.run()
    [req] = receiver.got
    body = json.loads(req["body"])
    assert req["path"] == "/alerts" and body["kind"] == "device.alert"
    assert "d1: alert disk-full fired (disk_percent 97.0 > 90.0)" in body["summary"]
    notify.run()
    assert len(receiver.got) == 1  # once


def test_a_groups_rollback_rule_alerts_for_its_devices_only(fleet: Fleet, receiver: Receiver) -> None:  # noqa: F811
    from bulkhead.server.models import DeviceEvent

    inside, outside = fleet.device("d1", ["line-1"]), fleet.device("d2")
    notify = NotificationService(fleet.db)
    notify.add(fleet.admin, "webhook", receiver.url + "/alerts", ["device.alert"])
    fleet.alerts.add(fleet.admin, "line-rollbacks", "rolled_back", 0, "line-1")
    with fleet.db.session() as s:
        for seq, dev in enumerate((inside, outside), start=1):
            s.add(DeviceEvent(tenant_id=fleet.tid, device_id=dev.device_id, seq=seq, kind="update", phase="rolled_back"))
    notify.run()
    notify.run()  # read again (the cursor lags): once
    [req] = receiver.got
    body = json.loads(req["body"])
    assert body["kind"] == "device.alert" and body["data"]["alert"] == "line-rollbacks" and body["data"]["device"] == "d1"
    assert "alert line-rollbacks fired: device d1 rolled back" in body["summary"]
