"""SQLAlchemy models of the package overlay (a signed APT repository per tenant): packages and published suites.

Kept apart from models.py (same declarative Base, created by migration 0025); every row belongs to one tenant.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["OverlayPackage", "OverlaySuite"]


class OverlayPackage(Base):
    """One uploaded .deb in one suite: its control paragraph (as the Packages index shows it) and its artifact."""

    __tablename__ = "overlay_packages"
    __table_args__ = (UniqueConstraint("tenant_id", "suite", "name", "version", "architecture"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    suite: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(128))
    architecture: Mapped[str] = mapped_column(String(32))
    control: Mapped[str] = mapped_column(Text)  # the control paragraph, without the fields the index adds
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    md5: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    uploaded_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The CVE ids its changelog entry names as fixed (migration 0029; services/overlay_fixes.py).
    fixes: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")


class OverlaySuite(Base):
    """A published suite: its signed Release and the index files (path → digest) of this and the previous generation."""

    __tablename__ = "overlay_suites"
    __table_args__ = (UniqueConstraint("tenant_id", "suite"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    suite: Mapped[str] = mapped_column(String(64))
    release: Mapped[str] = mapped_column(Text)
    inrelease: Mapped[str] = mapped_column(Text)
    release_gpg: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    # {"main/binary-amd64/Packages": {"sha256": ..., "size": ...}, ...}
    files: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    previous_files: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime())
