"""Device metrics: samples the agents send (CPU, memory, disk, temperature, uptime, network counters), kept as sent
for `raw_hours`, then as hourly averages for `retention_days`; the newest sample of each batch is judged by the
tenant's alert rules (services/alerts.py).

A sample is stored once however often a lost answer makes the agent send it again (unique per device and time).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bulkhead.protocol import DeviceStatus

from ..db import Database
from ..errors import Forbidden, Invalid
from ..metric_models import METRIC_COLUMNS, DeviceMetric
from ..models import Device, utcnow
from .alerts import AlertService, judged
from .auth import Principal
from .devices import find_device

__all__ = ["HOUR", "MetricsService"]

HOUR = 3600
_COUNTERS = {"uptime_seconds", "net_rx_bytes", "net_tx_bytes", "memory_total", "disk_total"}  # the hour's last value
_FUTURE = dt.timedelta(minutes=10)  # a device's clock may run this far ahead
_PAST = dt.timedelta(days=7)  # samples older than this (a device offline for long) are not taken
_DEVICES_PER_PASS = 500


def _insert(s: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    ins = pg_insert(DeviceMetric) if s.get_bind().dialect.name == "postgresql" else sqlite_insert(DeviceMetric)
    s.execute(ins.on_conflict_do_nothing(index_elements=["device_id", "resolution", "at"]), rows)


def _json(m: DeviceMetric) -> dict[str, Any]:
    return {"at": m.at.isoformat(), "resolution": m.resolution, **{c: getattr(m, c) for c in METRIC_COLUMNS}}


class MetricsService:
    def __init__(self, db: Database, alerts: AlertService, raw_hours: int = 48, retention_days: int = 90) -> None:
        self.db, self.alerts, self.raw_hours, self.retention_days = db, alerts, raw_hours, retention_days

    def ingest(self, who: Principal, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """A device's samples (at most a day's); its newest one judged by the alert rules."""
        if who.kind != "device" or who.device_id is None or who.tenant_id is None:
            raise Forbidden("this endpoint is for devices")
        if who.device_status != DeviceStatus.ACTIVE:
            raise Forbidden(f"device '{who.name}' is {who.device_status}")
        now = utcnow()
        rows = []
        for i, sample in enumerate(samples):
            at = sample["at"]
            if not now - _PAST <= at <= now + _FUTURE:
                raise Invalid(f"samples[{i}].at {at.isoformat()} is not within the last 7 days: is the device's clock set?")
            rows.append(
                {
                    "tenant_id": who.tenant_id,
                    "device_id": who.device_id,
                    "resolution": 0,
                    "at": at,
                    **{c: sample.get(c) for c in METRIC_COLUMNS},
                }
            )
        with self.db.session() as s:
            _insert(s, rows)
            if rows:
                dev = s.get_one(Device, who.device_id)
                newest = max(rows, key=lambda r: r["at"])
                self.alerts.judge_sample(s, dev, judged(newest), newest["at"])
        return {"accepted": len(rows)}

    def series(self, who: Principal, ref: str, since: dt.datetime, resolution: int | None) -> list[dict[str, Any]]:
        """The device's samples since `since`, oldest first: as sent while they are kept, hourly averages before
        (None: whichever the span needs)."""
        who.require("viewer")
        with self.db.read() as s:
            dev = find_device(s, who.require_tenant(), ref)
            q = select(DeviceMetric).where(DeviceMetric.device_id == dev.id, DeviceMetric.at >= since)
            if resolution is not None:
                q = q.where(DeviceMetric.resolution == resolution)
            return [_json(m) for m in s.scalars(q.order_by(DeviceMetric.at, DeviceMetric.resolution).limit(10_000))]

    # -- the periodic job ----------------------------------------------------------------------
    def run(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Every minute (jobs.py): offline alerts; samples past `raw_hours` into hourly averages; old hours dropped."""
        now = now or utcnow()
        fired = self.alerts.judge_offline(now)
        hours, dropped = self.downsample(now)
        return {"fired": fired, "hours": hours, "dropped": dropped}

    def downsample(self, now: dt.datetime) -> tuple[int, int]:
        cutoff = (now - dt.timedelta(hours=self.raw_hours)).replace(minute=0, second=0, microsecond=0)
        made = 0
        with self.db.session() as s:
            devices = list(
                s.scalars(
                    select(DeviceMetric.device_id)
                    .where(DeviceMetric.resolution == 0, DeviceMetric.at < cutoff)
                    .distinct()
                    .limit(_DEVICES_PER_PASS)
                )
            )
            if devices:
                old = (DeviceMetric.device_id.in_(devices), DeviceMetric.resolution == 0, DeviceMetric.at < cutoff)
                buckets: dict[tuple[int, int, dt.datetime], list[DeviceMetric]] = defaultdict(list)
                for m in s.scalars(select(DeviceMetric).where(*old).order_by(DeviceMetric.at)):
                    buckets[(m.device_id, m.tenant_id, m.at.replace(minute=0, second=0, microsecond=0))].append(m)
                rows = [_hour(device_id, tid, hour, ms) for (device_id, tid, hour), ms in buckets.items()]
                _insert(s, rows)
                s.execute(delete(DeviceMetric).where(*old))
                made = len(rows)
            gone = now - dt.timedelta(days=self.retention_days)
            dropped = s.execute(delete(DeviceMetric).where(DeviceMetric.at < gone)).rowcount  # type: ignore[attr-defined]
        return made, int(dropped or 0)


def _hour(device_id: int, tenant_id: int, hour: dt.datetime, samples: list[DeviceMetric]) -> dict[str, Any]:
    row: dict[str, Any] = {"tenant_id": tenant_id, "device_id": device_id, "resolution": HOUR, "at": hour}
    for c in METRIC_COLUMNS:
        values = [v for m in samples if (v := getattr(m, c)) is not None]
        if not values:
            row[c] = None
        elif c in _COUNTERS:
            row[c] = values[-1]
        else:
            mean = sum(values) / len(values)
            row[c] = round(mean, 2) if isinstance(values[0], float) else int(mean)
    return row
