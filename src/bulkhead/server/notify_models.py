"""SQLAlchemy models of notifications: per-tenant subscriptions, deliveries with each attempt, and the scan cursors.

Kept apart from models.py (same declarative Base, created by migration 0019); subscriptions and deliveries belong to
one tenant; a cursor is the server's (how far the notification job has read a table of events).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["NotifyAttempt", "NotifyCursor", "NotifyDelivery", "NotifySubscription"]


class NotifySubscription(Base):
    """Where a tenant wants to hear of which events: a webhook URL (signed with its own secret) or an e-mail address."""

    __tablename__ = "notify_subscriptions"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # webhook | email
    target: Mapped[str] = mapped_column(Text)  # the URL or the address
    secret: Mapped[str | None] = mapped_column(String(128))  # a webhook's HMAC key (shown once, at creation)
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NotifyDelivery(Base):
    """One event to one subscription: its payload, state (pending, delivered, failed) and when to try next."""

    __tablename__ = "notify_deliveries"
    # An event reaches a subscription once, however often the job reads it (event_key names the event).
    __table_args__ = (UniqueConstraint("subscription_id", "event_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("notify_subscriptions.id", ondelete="CASCADE"), index=True)
    uid: Mapped[str] = mapped_column(String(64))  # the delivery id sent in the header
    event_kind: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(256))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NotifyAttempt(Base):
    """One attempt of a delivery: the HTTP status (or SMTP reply code) or the error, and when."""

    __tablename__ = "notify_attempts"
    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("notify_deliveries.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ok: Mapped[bool] = mapped_column(default=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class NotifyCursor(Base):
    """How far the notification job has read a table of events (audit_events, device_events), by row id."""

    __tablename__ = "notify_cursors"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), default=0)
