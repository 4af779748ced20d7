"""SQLAlchemy models of vulnerability monitoring: scan runs, findings, device inventory profiles, VEX statements.

Kept apart from models.py (same declarative Base, created by migration 0013). Feeds themselves are files in the
data directory (`feeds/`), global to the server; everything here belongs to one tenant.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["AppSbom", "VexStatement", "VulnCve", "VulnDeviceProfile", "VulnFinding", "VulnProfile", "VulnScanRun"]


class VulnScanRun(Base):
    """One scan (or KEV update) of a tenant, kept for good: what was known when (CRA evidence)."""

    __tablename__ = "vuln_scan_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "full", "devices" (new inventories only), "kev"
    actor: Mapped[str] = mapped_column(String(256))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # {feed name: {"sha256", "records", "last_changed", "last_success", "origin"}} as used by this run
    feeds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {"releases", "profiles", "devices", "findings", "affected", "kev", ...}
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="done", server_default="done")  # queued, running, done, failed
    error: Mapped[str | None] = mapped_column(Text)  # why a failed run failed


class VulnProfile(Base):
    """What a set of devices runs: one compatible, one reported OS version, one package inventory.

    Devices with the same inventory share a profile, so findings are matched and stored once per profile, not per
    device; `vuln_device_profiles` maps each device to its profile.
    """

    __tablename__ = "vuln_profiles"
    __table_args__ = (UniqueConstraint("tenant_id", "compatible", "os_version", "inventory_sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    compatible: Mapped[str] = mapped_column(String(256))
    os_version: Mapped[str] = mapped_column(String(256))  # "" when the device reported none
    inventory_sha256: Mapped[str] = mapped_column(String(64))  # of the packages and os-release ("" when none)
    # {"packages": {"format", "packages": {name: version}}, "os_release": {...}}: kept so rescans need no device reads
    inventory: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id", ondelete="SET NULL"))
    scanned_run_id: Mapped[int | None] = mapped_column(Integer)
    # Per vulnerability id, a digest of the profile's stored findings (JSON text, migration 0018; vuln_scan.py)
    id_digests: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)
    stale_ids: Mapped[str | None] = mapped_column(Text, nullable=True)  # rewritten by incremental runs since


class VulnDeviceProfile(Base):
    """A device's profile, and the inventory fingerprint and OS version it was mapped from (to see changes)."""

    __tablename__ = "vuln_device_profiles"
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("vuln_profiles.id", ondelete="CASCADE"), index=True)
    reported_sha256: Mapped[str] = mapped_column(String(64))  # devices.reported_sha256 when mapped ("" when none)
    os_version: Mapped[str] = mapped_column(String(256))
    # The device's group list (JSON text, as devices.groups reads as text) when mapped: exposure by group is counted
    # here, over this narrow table, not over the devices.
    groups: Mapped[str] = mapped_column(Text, default="[]")
    # The device attribute `country` (ISO 3166-1 alpha-2, upper case; "" when absent) when mapped: exposure per
    # member state is counted here too.
    country: Mapped[str] = mapped_column(String(16), default="", server_default="")


class VulnFinding(Base):
    """What one CVE means for one component of a release (release scope) or of a device profile (device scope)."""

    __tablename__ = "vuln_findings"
    __table_args__ = (
        Index("ix_vuln_findings_tenant_cve", "tenant_id", "cve", "status"),
        Index("ix_vuln_findings_release", "release_id", "profile_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))  # release scope only
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("vuln_profiles.id", ondelete="CASCADE"), index=True)
    compatible: Mapped[str] = mapped_column(String(256))
    component: Mapped[str] = mapped_column(String(256))
    component_version: Mapped[str] = mapped_column(String(256))
    purl: Mapped[str | None] = mapped_column(Text)
    cve: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))  # effective: the matcher's, or the VEX statement's
    matcher_status: Mapped[str] = mapped_column(String(24))
    severity: Mapped[str] = mapped_column(String(16))
    severity_rank: Mapped[int] = mapped_column(Integer)  # 0 unknown/none .. 4 critical, for min_severity filters
    cvss: Mapped[float | None] = mapped_column(Float)
    epss: Mapped[float | None] = mapped_column(Float)
    kev: Mapped[bool] = mapped_column(Boolean, default=False)
    kev_date: Mapped[dt.date | None] = mapped_column(Date)
    fixed_version: Mapped[str | None] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    kernel: Mapped[bool] = mapped_column(Boolean, default=False)
    vex_id: Mapped[int | None] = mapped_column(ForeignKey("vex_statements.id", ondelete="SET NULL"))
    run_id: Mapped[int] = mapped_column(ForeignKey("vuln_scan_runs.id", ondelete="CASCADE"), index=True)
    app: Mapped[str | None] = mapped_column(String(128))  # the app whose SBOM lists the component (device scope only)
    app_version: Mapped[str | None] = mapped_column(String(128))


class VexStatement(Base):
    """A triage decision for a product (compatible) and CVE, optionally one component; applies to every release."""

    __tablename__ = "vex_statements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "compatible", "cve", "component", "component_version", name="uq_vex_statements_key"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    compatible: Mapped[str] = mapped_column(String(256))
    cve: Mapped[str] = mapped_column(String(64))
    component: Mapped[str] = mapped_column(String(256))  # "" = every component of the product
    # The version it was triaged against: it applies while the component has this version ("" = any version)
    component_version: Mapped[str] = mapped_column(String(256), default="", server_default="")
    purl: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16), default="user", server_default="user")  # user, sbom, overlay
    status: Mapped[str] = mapped_column(String(24))
    justification: Mapped[str | None] = mapped_column(String(64))
    impact_statement: Mapped[str | None] = mapped_column(Text)
    action_statement: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(256))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VulnCve(Base):
    """What the feeds say about a CVE some finding names (global, like the feeds): shown without reading the feeds."""

    __tablename__ = "vuln_cves"
    cve: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    published: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    updated: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AppSbom(Base):
    """An app version's CycloneDX SBOM, its bytes in the artifact store under their sha256 (one per app version)."""

    __tablename__ = "app_sboms"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), unique=True)
    spec_version: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    components: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
