"""What the last scans of a tenant matched against: incremental re-matching compares with it (migration 0014).

Kept apart from vuln_models.py (same declarative Base). `vuln_cve_digests` holds, per tenant, the digest of what the
feeds said about each vulnerability when its findings were last matched (`bulkhead.cra.cve_digest`);
`vuln_release_scans` holds which SBOMs each release's findings were matched from. `vuln_profile_groups` counts the
devices of each profile per group list, as every scan mapped them (fleet exposure reads these few rows instead of
counting a large fleet's mapping on every query). `vuln_exposure_samples` keeps the exposure summary after each
change (the exposure-over-time plot).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["FeedFile", "VulnCveDigest", "VulnExposureSample", "VulnProfileGroups", "VulnReleaseScan"]


class VulnCveDigest(Base):
    """What the feeds said about one vulnerability when a tenant's findings of it were last matched."""

    __tablename__ = "vuln_cve_digests"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    cve: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(32))


class VulnReleaseScan(Base):
    """The SBOMs (their sha256s, in order) a release's own findings were last matched from, by which run, and a digest
    of those findings (a full run that finds the same leaves them as they are)."""

    __tablename__ = "vuln_release_scans"
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    sboms: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(Integer)
    # What its findings said when last written whole (None after an incremental run rewrote some of them)
    rows_digest: Mapped[str | None] = mapped_column(String(32))
    # Per vulnerability id, a digest of its stored findings here (JSON text, migration 0018): a full run rewrites only
    # the ids whose digest changed. None: unknown (the next full run writes them all).
    id_digests: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)
    # The ids an incremental run rewrote since (JSON list): their digests are not known, the next full run writes them
    stale_ids: Mapped[str | None] = mapped_column(Text, nullable=True)


class VulnProfileGroups(Base):
    """How many devices of a profile have one group list (JSON text), counted by the last scan's mapping."""

    __tablename__ = "vuln_profile_groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("vuln_profiles.id", ondelete="CASCADE"), index=True)
    groups: Mapped[str] = mapped_column(Text)
    devices: Mapped[int] = mapped_column(Integer)


class VulnExposureSample(Base):
    """The fleet's exposure summary after a change that moved it (a scan run, a KEV update, a VEX statement): the
    points of the exposure-over-time plot. Kept for good, like the runs (a few a day)."""

    __tablename__ = "vuln_exposure_samples"
    __table_args__ = (Index("ix_vuln_exposure_samples_tenant_at", "tenant_id", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cause: Mapped[str] = mapped_column(String(64))  # "scan 12 (full)", "kev 13", "vex"
    cves: Mapped[int] = mapped_column(Integer)
    kev: Mapped[int] = mapped_column(Integer)
    devices: Mapped[int] = mapped_column(Integer)
    by_severity: Mapped[dict[str, Any]] = mapped_column(JSON)


class FeedFile(Base):
    """One file of the vulnerability feed directory as the cluster holds it (feed_replica.py): its bytes are in the
    artifact store under `sha256`; `previous_sha256` (the version before) is kept until the next change, so a host
    still downloading it when another host publishes a new one finishes."""

    __tablename__ = "feed_files"
    path: Mapped[str] = mapped_column(String(512), primary_key=True)  # relative to the feed directory
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    previous_sha256: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))  # the host that published it (for people)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
