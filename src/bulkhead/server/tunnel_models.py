"""SQLAlchemy models of remote sessions (services/remote_sessions.py): the audited session and its connections.

Kept apart from models.py (same declarative Base, created by migration 0037).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["RemoteSession", "TunnelConnection"]


class RemoteSession(Base):
    """An operator's shell or port forward on one device: who, when, how long, how much (protocol/tunnel.py)."""

    __tablename__ = "remote_sessions"
    __table_args__ = (Index("ix_remote_sessions_device", "device_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # shell | forward
    target: Mapped[str | None] = mapped_column(String(300))  # forward: host:port as the device reaches it
    status: Mapped[str] = mapped_column(String(16), default="open")
    opened_by: Mapped[str] = mapped_column(String(256))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    close_reason: Mapped[str | None] = mapped_column(String(200))
    connections: Mapped[int] = mapped_column(Integer, default=0)  # joined in all
    live: Mapped[int] = mapped_column(Integer, default=0)  # joined and not yet ended
    active_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)  # the last join or end
    bytes_to_device: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_from_device: Mapped[int] = mapped_column(BigInteger, default=0)
    recording_sha256: Mapped[str | None] = mapped_column(String(64))  # the shell's output (asciicast v2) in the store
    recording_bytes: Mapped[int | None] = mapped_column(BigInteger)


class TunnelConnection(Base):
    """One connection of a session while it is being set up: the operator's side waits in the server process at
    `relay` until the device dials in with the id (`key` lets that process tell a relayed dial from a stray one)."""

    __tablename__ = "tunnel_connections"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("remote_sessions.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    relay: Mapped[str] = mapped_column(String(300))  # unix:/path or tcp:host:port of the waiting process
    key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    joined_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
