"""Device metrics (/device/v1/metrics from the agent, /api/v1/devices/{ref}/metrics for users) and alert rules
(/api/v1/alerts): services/device_metrics.py, services/alerts.py."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from ..services.alerts import AlertService
from ..services.auth import Principal
from ..services.device_metrics import HOUR, MetricsService
from .deps import Services, principal, services
from .wire import Out, Time

router = APIRouter(tags=["metrics and alerts"])

_BIG = 2**62


class Sample(BaseModel):
    """One sample of the device's health figures (absent: the device cannot measure it)."""

    at: AwareDatetime
    cpu_percent: float | None = Field(None, ge=0, le=100)
    memory_used: int | None = Field(None, ge=0, le=_BIG)
    memory_total: int | None = Field(None, ge=0, le=_BIG)
    disk_used: int | None = Field(None, ge=0, le=_BIG, description="bytes used on the data partition")
    disk_total: int | None = Field(None, ge=0, le=_BIG)
    temperature_c: float | None = Field(None, ge=-273, le=1000, description="the hottest thermal zone")
    uptime_seconds: float | None = Field(None, ge=0, le=_BIG)
    net_rx_bytes: int | None = Field(None, ge=0, le=_BIG, description="received on all interfaces but loopback, since boot")
    net_tx_bytes: int | None = Field(None, ge=0, le=_BIG)
    load1: float | None = Field(None, ge=0, le=1_000_000)


class MetricsIn(BaseModel):
    samples: list[Sample] = Field(max_length=1440, description="at most a day's samples at one a minute")


class MetricsAccepted(Out):
    """How many samples were taken (a sample sent again is not stored twice)."""

    accepted: int


class MetricOut(Sample, Out):
    """A sample as stored: `resolution` 0 as the device sent it, 3600 an hour's average (counters: the hour's last)."""

    at: Time  # type: ignore[assignment]
    resolution: int


class AlertIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    metric: Literal[
        "disk_percent", "memory_percent", "cpu_percent", "temperature_c", "offline_minutes", "rolled_back", "security_event"
    ]
    threshold: float = Field(0, description="fires above this (percent, °C, or minutes without contact); events: unused")
    group: str | None = Field(None, max_length=64, description="only the group's devices (absent: every device)")


class AlertOut(Out):
    """An alert rule: it fires once per device and episode, into subscriptions to `device.alert`."""

    id: int
    name: str
    metric: str
    threshold: float
    group: str | None
    created_by: str
    created_at: Time


class FiringOut(Out):
    """An alert firing now for one device."""

    alert: str
    metric: str
    threshold: float
    device: str
    since: Time
    value: float | None


def _metrics(svc: Services) -> MetricsService:
    return svc.metrics or MetricsService(svc.db, AlertService(svc.db))


def _alerts(svc: Services) -> AlertService:
    return svc.metrics.alerts if svc.metrics is not None else AlertService(svc.db)


@router.post("/device/v1/metrics", response_model=MetricsAccepted, tags=["device"])
def send_metrics(body: MetricsIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """The agent's samples since its last batch (agent/metrics.py)."""
    return _metrics(svc).ingest(who, [x.model_dump() for x in body.samples])


@router.get("/api/v1/devices/{ref}/metrics", response_model=list[MetricOut])
def device_metrics(
    ref: str,
    since: AwareDatetime | None = Query(None, description="from when (default: the last 24 hours)"),
    resolution: Literal["raw", "hour"] | None = Query(None, description="as sent, or hourly averages (default: both)"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """The device's samples, oldest first (at most 10,000)."""
    start = since or dt.datetime.now(dt.UTC) - dt.timedelta(hours=24)
    res = {"raw": 0, "hour": HOUR, None: None}[resolution]
    return _metrics(svc).series(who, ref, start, res)


@router.get("/api/v1/alerts", response_model=list[AlertOut])
def list_alerts(who: Principal = Depends(principal), svc: Services = Depends(services)) -> list[dict[str, Any]]:
    return _alerts(svc).rules(who)


@router.post("/api/v1/alerts", status_code=201, response_model=AlertOut)
def add_alert(body: AlertIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Add an alert rule (operators; audited). Subscribe a webhook or an e-mail address to `device.alert`
    (`/api/v1/notifications/subscriptions`) to be told when it fires."""
    return _alerts(svc).add(who, body.name, body.metric, body.threshold, body.group)


@router.delete("/api/v1/alerts/{name}", status_code=204)
def remove_alert(name: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    _alerts(svc).remove(who, name)
    return Response(status_code=204)


@router.get("/api/v1/alerts/firing", response_model=list[FiringOut])
def firing_alerts(who: Principal = Depends(principal), svc: Services = Depends(services)) -> list[dict[str, Any]]:
    """What fires now, newest first."""
    return _alerts(svc).firing(who)
