"""SQLAlchemy models of device metrics and alerts (services/device_metrics.py, services/alerts.py).

Kept apart from models.py (same declarative Base, created by migration 0038).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["METRIC_COLUMNS", "AlertRule", "AlertState", "DeviceMetric"]

# What a sample holds (the agent's agent/metrics.py names): gauges are averaged and counters kept at their last
# value when samples are downsampled to hours.
METRIC_COLUMNS = (
    "cpu_percent", "memory_used", "memory_total", "disk_used", "disk_total", "temperature_c", "uptime_seconds",
    "net_rx_bytes", "net_tx_bytes", "load1",
)  # fmt: skip


class DeviceMetric(Base):
    """One sample of a device's health figures (`resolution` 0: as sampled; 3600: an hour's average)."""

    __tablename__ = "device_metrics"
    __table_args__ = (
        UniqueConstraint("device_id", "resolution", "at", name="uq_device_metrics_sample"),
        Index("ix_device_metrics_resolution_at", "resolution", "at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    resolution: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_used: Mapped[int | None] = mapped_column(BigInteger)
    memory_total: Mapped[int | None] = mapped_column(BigInteger)
    disk_used: Mapped[int | None] = mapped_column(BigInteger)
    disk_total: Mapped[int | None] = mapped_column(BigInteger)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    uptime_seconds: Mapped[float | None] = mapped_column(Float)
    net_rx_bytes: Mapped[int | None] = mapped_column(BigInteger)
    net_tx_bytes: Mapped[int | None] = mapped_column(BigInteger)
    load1: Mapped[float | None] = mapped_column(Float)


class AlertRule(Base):
    """A tenant's (or one group's) alert: a metric above a threshold, or a device offline longer than N minutes."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(
        String(32)
    )  # disk_percent | memory_percent | cpu_percent | temperature_c | offline_minutes
    threshold: Mapped[float] = mapped_column(Float)
    group: Mapped[str | None] = mapped_column(String(64))  # None: every device of the tenant
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AlertState(Base):
    """A rule firing for a device since `since` (the row goes when it resolves): one notification per episode."""

    __tablename__ = "alert_states"
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    value: Mapped[float | None] = mapped_column(Float)
