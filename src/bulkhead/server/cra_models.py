"""SQLAlchemy models of the CRA duties: products with their support period, Article 14 cases and their log.

Kept apart from models.py (same declarative Base, created by migration 0017); every row belongs to one tenant.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["CraCase", "CraCaseEntry", "CraProduct"]


class CraProduct(Base):
    """A product as the CRA sees it, per compatible: its name, manufacturer and the end of its support period."""

    __tablename__ = "cra_products"
    __table_args__ = (UniqueConstraint("tenant_id", "compatible"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    compatible: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(256))
    manufacturer: Mapped[str] = mapped_column(String(256))
    support_end: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CraCase(Base):
    """An Article 14 case: an actively exploited vulnerability or a severe incident, its awareness time and state."""

    __tablename__ = "cra_cases"
    # One case per tenant and KEV-listed CVE opened from the KEV event (kev_cve is null for cases opened by hand).
    __table_args__ = (UniqueConstraint("tenant_id", "kev_cve"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # vulnerability | incident (bulkhead.cra.article14.CaseKind)
    source: Mapped[str] = mapped_column(String(16))  # kev | manual
    kev_cve: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(24), index=True)
    cves: Mapped[list[Any]] = mapped_column(JSON, default=list)
    compatible: Mapped[str | None] = mapped_column(String(256))  # the product, when one is named (else: from findings)
    suggested_awareness_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    awareness_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    awareness_by: Mapped[str | None] = mapped_column(String(256))
    # When a corrective or mitigating measure became available, and what it is:
    # {"release_id", "version", "compatible", "origin": "exposure"|"manual", "description"}
    corrective_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    corrective: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # the notification's submission
    assignee: Mapped[str | None] = mapped_column(String(256))
    mitigations: Mapped[str | None] = mapped_column(Text)
    dismissed_reason: Mapped[str | None] = mapped_column(Text)
    # What the opening signal said (the KEV event's details: dates, ransomware use, devices, releases)
    signal: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    opened_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CraCaseEntry(Base):
    """One entry of a case's log: a note, a submission (with its reference and the exact fields sent), a CSIRT request."""

    __tablename__ = "cra_case_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cra_cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # note | submission | csirt_request
    submission: Mapped[str | None] = mapped_column(String(24))  # early_warning | notification | final_report
    reference: Mapped[str | None] = mapped_column(String(256))  # the reporting platform's or the CSIRT's reference
    text: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # a submission's fields as exported
    actor: Mapped[str] = mapped_column(String(256))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    seq: Mapped[int] = mapped_column(Integer, default=0)
