"""SQLAlchemy models of CSAF advisories and of each tenant's CSAF provider (publisher, contact, signing key).

Kept apart from models.py (same declarative Base, created by migration 0020); every row belongs to one tenant.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["CraAdvisory", "CraProvider"]


class CraAdvisory(Base):
    """A CSAF security advisory about CVEs of one product: what it is made from (the working draft) and, once
    published, the exact bytes served with their hashes and OpenPGP signature."""

    __tablename__ = "cra_advisories"
    __table_args__ = (UniqueConstraint("tenant_id", "tracking_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    tracking_id: Mapped[str] = mapped_column(String(128))
    compatible: Mapped[str] = mapped_column(String(256))
    cves: Mapped[list[Any]] = mapped_column(JSON, default=list)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    cvss: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # CVE -> CVSS vector given by a person
    change: Mapped[str | None] = mapped_column(Text)  # what the next revision changes (its revision history summary)
    # draft: never published; final: published and unchanged since; revised: published, changed since (not yet out)
    state: Mapped[str] = mapped_column(String(16), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)  # the published version (0: none)
    revisions: Mapped[list[Any]] = mapped_column(JSON, default=list)  # published: [{"number", "date", "summary"}]
    initial_release_date: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    current_release_date: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    published: Mapped[str | None] = mapped_column(Text)  # the document as served (UTF-8 JSON text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    sha512: Mapped[str | None] = mapped_column(String(128))
    signature: Mapped[str | None] = mapped_column(Text)  # ASCII-armoured detached OpenPGP signature of `published`
    signer: Mapped[str | None] = mapped_column(String(64))  # the signing key's fingerprint
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CraProvider(Base):
    """A tenant's CSAF provider: the publisher named in its advisories, its security contact and policy, and the
    OpenPGP key that signs them (the public half here; the secret one in the server's GnuPG home)."""

    __tablename__ = "cra_providers"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    publisher_name: Mapped[str | None] = mapped_column(String(256))
    namespace: Mapped[str | None] = mapped_column(String(512))
    contact: Mapped[str | None] = mapped_column(String(512))  # security.txt Contact (mailto: or https:)
    policy: Mapped[str | None] = mapped_column(String(512))  # security.txt Policy (https: URL)
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    public_key: Mapped[str | None] = mapped_column(Text)  # ASCII-armoured
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
