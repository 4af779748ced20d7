"""SQLAlchemy models of security updates by policy: which releases are security updates, the policies of the tenant,
its groups and devices, and postponements.

Kept apart from models.py (same declarative Base, created by migration 0021); every row belongs to one tenant.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["SecurityMark", "SecurityPolicyRow", "SecurityPostponement"]


class SecurityMark(Base):
    """A release marked a security update, and since when it is available as one (its window counts from then)."""

    __tablename__ = "security_releases"
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    available_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    marked_by: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SecurityPolicyRow(Base):
    """The security-update policy of the tenant (key "tenant"), a group ("group:NAME") or a device ("device:ID")."""

    __tablename__ = "security_policies"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(160))
    group_name: Mapped[str | None] = mapped_column(String(128))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(16))  # automatic | opt_out
    window_days: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SecurityPostponement(Base):
    """One security release postponed for a group ("group:NAME") or a device ("device:ID") until a time."""

    __tablename__ = "security_postponements"
    __table_args__ = (UniqueConstraint("release_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(160))
    group_name: Mapped[str | None] = mapped_column(String(128))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    postponed_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
