"""Prometheus metrics: what the fleet is, read from the database when scraped, and what the server processes did.

Fleet metrics (devices by status and by last contact, rollouts, the actions of rollouts still in progress, bytes
served, stored device events, the job queue) are a handful of aggregate queries at scrape time: always true, whatever
process answers the scrape, nothing to keep in step. Request counts and durations are counted by every worker process;
with several workers `bulkhead server` points prometheus_client at a directory of per-process files
(PROMETHEUS_MULTIPROC_DIR), so any worker's scrape sums them all.

A tenant's token sees its tenant's fleet; the server administrator token sees every tenant (label `tenant`).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from .db import Database
from .models import Action, Device, DeviceEvent, Rollout, Tenant
from .services.security_events import counts as security_counts

__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "FleetCollector", "observe", "prepare_multiprocess", "render", "start_process"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Rollouts whose actions are still counted (a finished rollout's are history; its counts are in its progress).
_IN_PROGRESS = ("scheduled", "running", "paused")
_SEEN_WITHIN = {"5m": 300, "1h": 3600, "24h": 86400}

REQUESTS = Counter("bulkhead_http_requests", "HTTP requests answered, by part of the server and status class", ["app", "code"])
DURATION = Histogram(
    "bulkhead_http_request_duration_seconds",
    "Time to answer a request (to the end of the answer), by part of the server",
    ["app"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0),
)


def observe(app: str, status: int, seconds: float) -> None:
    """Count one answered request of `app` (api, poll, reports, delivery)."""
    REQUESTS.labels(app, f"{status // 100}xx" if status else "none").inc()
    DURATION.labels(app).observe(seconds)


def start_process() -> None:
    """In each server process, before it counts anything: share counts through the multiprocess directory when
    there is one (a worker forked from a parent that imported prometheus_client chose in-memory values there)."""
    if os.environ.get(MULTIPROC_ENV) and values.ValueClass is values.MutexValue:
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def prepare_multiprocess(run_dir: Path) -> None:
    """Before worker processes start: give them an empty directory for their metric files (unless set already)."""
    if os.environ.get(MULTIPROC_ENV):
        return
    path = run_dir / "metrics"
    shutil.rmtree(path, ignore_errors=True)  # files of a previous run would add its counts to this one's
    path.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(path)


class FleetCollector(Collector):
    """The fleet's state in a few aggregate queries, for one tenant or (tenant None) all of them."""

    def __init__(self, db: Database, tenant_id: int | None, queue: Callable[[], tuple[int, int]] | None = None) -> None:
        self.db, self.tenant_id, self.queue = db, tenant_id, queue

    def _scoped(self, q: Any, column: Any) -> Any:
        return q if self.tenant_id is None else q.where(column == self.tenant_id)

    def collect(self) -> Iterator[Metric]:
        now = dt.datetime.now(dt.UTC)
        with self.db.session() as s:
            names = dict(s.execute(self._scoped(select(Tenant.id, Tenant.name), Tenant.id)).tuples().all())
            devices = GaugeMetricFamily("bulkhead_devices", "Devices by status", labels=["tenant", "status"])
            for tid, status, n in s.execute(
                self._scoped(select(Device.tenant_id, Device.status, func.count()), Device.tenant_id).group_by(
                    Device.tenant_id, Device.status
                )
            ):
                devices.add_metric([names.get(tid, str(tid)), status], n)
            yield devices

            seen = GaugeMetricFamily(
                "bulkhead_devices_seen", "Devices that polled or reported within a time", labels=["tenant", "within"]
            )
            served = GaugeMetricFamily(
                "bulkhead_device_bytes_served", "Artifact bytes sent to the devices there are", labels=["tenant"]
            )
            windows = [
                func.sum(case((Device.last_seen > now - dt.timedelta(seconds=sec), 1), else_=0)) for sec in _SEEN_WITHIN.values()
            ]
            q = select(Device.tenant_id, func.coalesce(func.sum(Device.bytes_served), 0), *windows).group_by(Device.tenant_id)
            for tid, total, *counts in s.execute(self._scoped(q, Device.tenant_id)):
                tenant = names.get(tid, str(tid))
                served.add_metric([tenant], int(total))
                for within, n in zip(_SEEN_WITHIN, counts, strict=True):
                    seen.add_metric([tenant, within], int(n or 0))
            yield seen
            yield served

            rollouts = GaugeMetricFamily("bulkhead_rollouts", "Rollouts by status", labels=["tenant", "status"])
            by_status = select(Rollout.tenant_id, Rollout.status, func.count()).group_by(Rollout.tenant_id, Rollout.status)
            for tid, status, n in s.execute(self._scoped(by_status, Rollout.tenant_id)):
                rollouts.add_metric([names.get(tid, str(tid)), status], n)
            yield rollouts

            actions = GaugeMetricFamily(
                "bulkhead_rollout_actions",
                "Device actions of rollouts in progress, by status (each device's newest attempt)",
                labels=["tenant", "rollout", "status"],
            )
            open_actions = (
                select(Rollout.tenant_id, Rollout.name, Action.status, func.count())
                .join(Action, Action.rollout_id == Rollout.id)
                .where(Rollout.status.in_(_IN_PROGRESS), Action.superseded.is_(False))
                .group_by(Rollout.tenant_id, Rollout.name, Action.status)
            )
            for tid, name, status, n in s.execute(self._scoped(open_actions, Rollout.tenant_id)):
                actions.add_metric([names.get(tid, str(tid)), name, status], n)
            yield actions

            security = GaugeMetricFamily(
                "bulkhead_device_security_events",
                "Security events the devices reported (CRA Annex I device security log), by kind",
                labels=["tenant", "kind"],
            )
            for tid, kind, n in security_counts(s, self.tenant_id):
                security.add_metric([names.get(tid, str(tid)), kind], n)
            yield security

            if self.tenant_id is None:  # event ids are global: the newest one counts every event stored so far
                events = GaugeMetricFamily("bulkhead_device_events_stored", "Device events stored (the newest event id)")
                events.add_metric([], s.scalar(select(func.coalesce(func.max(DeviceEvent.id), 0))) or 0)
                yield events
        if self.queue is not None and self.tenant_id is None:
            pending, scheduled = self.queue()
            depth = GaugeMetricFamily("bulkhead_jobs", "Background jobs waiting in the queue", labels=["state"])
            depth.add_metric(["pending"], pending)
            depth.add_metric(["scheduled"], scheduled)
            yield depth


def render(fleet: FleetCollector) -> bytes:
    """The exposition text: this fleet, and the request metrics of every server process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(fleet)
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Local())
    return generate_latest(registry)


class _Local(Collector):
    """The request metrics of this process (one process, no multiprocess directory)."""

    def collect(self) -> Iterator[Metric]:
        yield from REQUESTS.collect()
        yield from DURATION.collect()
