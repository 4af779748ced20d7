"""SQLAlchemy models of the control plane; every row below Tenant belongs to one tenant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# A JSON list that SQL filters by containment: jsonb on PostgreSQL, JSON text on SQLite.
_JSON_ARRAY = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A point in time stored as UTC and always read back timezone-aware (UTC), on SQLite and PostgreSQL alike.

    SQLite has no time zone type: SQLAlchemy writes the wall-clock digits and drops the offset, so a
    `+05:00` time came back five hours off. Values are converted to UTC before they are written; a naive
    value is taken as UTC (the API edge refuses naive input, see `services/timeparse.py`). The column
    type underneath is unchanged (`DateTime(timezone=True)`), so no migration is needed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    keyring_pem: Mapped[str | None] = mapped_column(Text)
    keyring_check_purpose: Mapped[str] = mapped_column(String(16), default="smimesign")
    # Container registry credentials devices use to pull app images: {host: {username, password}}.
    registries: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # hawkBit DDI settings: {"gateway_token_hash", "auto_register": bool}.
    ddi: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Signing key the server may use to build delta bundles itself: {"cert_pem", "key_sealed", "set_by", "set_at"}.
    # Null (the default): deltas are built where the release key is (`bulkhead delta create` in CI) and uploaded.
    delta_signing: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Remote sessions (services/remote_sessions.py): {"enabled": bool, "idle_timeout_seconds": int}; null: off.
    remote_access: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("tenant_id", "compatible", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    compatible: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(Text)
    build: Mapped[str | None] = mapped_column(String(256))
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    signer: Mapped[str | None] = mapped_column(Text)
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReleaseSbom(Base):
    """A release's SBOM (SPDX or CycloneDX JSON), its bytes in the artifact store under their sha256."""

    __tablename__ = "release_sboms"
    __table_args__ = (UniqueConstraint("release_id", "format"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(16))  # "spdx" or "cyclonedx"
    spec_version: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    components: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeltaBundle(Base):
    """A signed RAUC bundle that patches one source release's images into its target release's images."""

    __tablename__ = "delta_bundles"
    __table_args__ = (UniqueConstraint("release_id", "source_release_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    source_release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    signer: Mapped[str | None] = mapped_column(Text)
    # {"status": "ready"|"building"|"failed", "origin": "upload"|"server", "hashes": {md5, sha1, sha256},
    #  "images": [{slotclass, filename, source_sha256, target_sha256}], "error"}
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeviceGroup(Base):
    __tablename__ = "device_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    # Desired state shared by the group's devices: {"release_id", "apps": {name: version}, "files": [...]}.
    desired: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Maintenance window of the group's devices: {"cron", "duration_minutes", "timezone"} or null.
    window: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class App(Base):
    """A container application version: one or more containers (from specs or a compose file)."""

    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("tenant_id", "name", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(128))
    containers: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BootstrapToken(Base):
    __tablename__ = "bootstrap_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    group_name: Mapped[str | None] = mapped_column(String(128))
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    compatible: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="active")
    credential_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # jsonb on PostgreSQL (migration 0031): the list filters' `@>` needs no parse per row, and GIN indexes them.
    tags: Mapped[list[Any]] = mapped_column(_JSON_ARRAY, default=list)
    groups: Mapped[list[Any]] = mapped_column(_JSON_ARRAY, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The agent's inventory (packages, containers, slots) is a row of its own (DeviceInventory, loaded where it is
    # read): in this row it made the table seven times wider, and every scan of the fleet (rollout targets, joiner
    # searches, group counts) read it (migration 0032).
    inventory: Mapped[DeviceInventory | None] = relationship(lazy="select", cascade="all, delete-orphan", passive_deletes=True)
    # The OS release version the device runs (from its inventory, or a DDI install): which delta applies.
    os_version: Mapped[str | None] = mapped_column(String(256))
    desired_release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    bytes_served: Mapped[int] = mapped_column(BigInteger, default=0)
    # Device-level desired apps and files (override the groups'): {"apps": {name: version|null}, "files": [...]}.
    desired: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Latest update status the agent reported: {"phase", "release_id", "version", "reason", "progress", "at"}.
    update_status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # DDI: the server asks for configData until the device has sent its attributes.
    attributes_wanted: Mapped[bool] = mapped_column(Boolean, default=True)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    enrolled_with: Mapped[int | None] = mapped_column(ForeignKey("bootstrap_tokens.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Raised whenever the credential is reset or rotated, or the device is disabled: signed URLs carry it, so
    # every URL handed out before is refused from then on.
    credential_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # Set by an operator's `device reset-credential`: the next enrollment under this name may take it (once).
    reenroll_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    # After a rotation, the credential the device held before, valid until the device first uses the new one
    # (so a rotation whose answer was lost does not lock the device out).
    previous_credential_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    # sha256 of the inventory text `reported` was last written from: a report that repeats it writes nothing.
    reported_sha256: Mapped[str | None] = mapped_column(String(64))
    # An administrator's request that the device erase its data partition and enroll again (services/device_reset.py):
    # in its state answer until the device enrolls again, proving itself with the credential it held.
    factory_reset_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def reported(self) -> dict[str, Any]:
        """The agent's last inventory ({} before its first)."""
        return self.inventory.reported if self.inventory is not None else {}

    @reported.setter
    def reported(self, value: dict[str, Any]) -> None:
        if self.inventory is not None:
            self.inventory.reported = value
        elif value:
            self.inventory = DeviceInventory(reported=value)


class DeviceInventory(Base):
    """A device's inventory as its agent last reported it: written when it changes (a report that repeats it
    writes nothing, see Device.reported_sha256), read by the device detail and the vulnerability scan."""

    __tablename__ = "device_inventories"
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    reported: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DeviceEvent(Base):
    """One entry of a device's history as its agent reported it (update phases, app and file results)."""

    __tablename__ = "device_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str | None] = mapped_column(String(32))
    release_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    device_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


# A rollout installs exactly one subject (migration 0030).
ONE_SUBJECT = (
    "(CASE WHEN release_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN app_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN packages IS NULL THEN 0 ELSE 1 END) = 1"
)


class Rollout(Base):
    """A release, an app version or a package set to the devices a filter selects, in phases, under the owner's
    control."""

    __tablename__ = "rollouts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(ONE_SUBJECT, name="ck_rollouts_one_target"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    # Exactly one of release_id (an OS release), app_id (an app version) and packages (a package set) is set.
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    app_id: Mapped[int | None] = mapped_column(ForeignKey("apps.id", name="fk_rollouts_app_id"))
    # {name: {"name", "version", "hold", "remove"}}: Debian packages from the overlay (migration 0030)
    packages: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # None: SQL NULL, not JSON null
    # {"tags": [...], "groups": [...], "compatible": str|null, "attributes": {key: value}}
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    # [{"name", "group"|null, "percent"|null, "success_threshold", "error_threshold"}]
    phases: Mapped[list[Any]] = mapped_column(JSON)
    action_type: Mapped[str] = mapped_column(String(16))
    window: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    start_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(24), index=True)
    current_phase: Mapped[int] = mapped_column(Integer, default=0)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    # Failures per phase the operator accepted by resuming: {"0": 1}.
    accepted_failures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # How many phases are open: actions of later phases exist (made at creation) but are not offered to devices yet.
    phases_started: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Action(Base):
    """One device's part in a rollout, with its status history."""

    __tablename__ = "actions"
    __table_args__ = (
        # A package rollout's actions have neither (the packages are the rollout's).
        CheckConstraint("release_id IS NULL OR app_id IS NULL", name="ck_actions_one_target"),
        # A rollout's progress is counted by the database over this index (phase, status, latest attempt), and its
        # devices are read from it (who joined the target later) without visiting the table.
        Index(
            "ix_actions_rollout_progress",
            *("rollout_id", "phase", "superseded", "status", "active", "device_id"),
            postgresql_include=["bytes_done"],
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # tenant_id, release_id and app_id repeat the rollout's (which holds the foreign keys); on PostgreSQL they have
    # none of their own, so that a rollout's 100,000 action rows are not 300,000 key lookups (migration 0012).
    tenant_id: Mapped[int] = mapped_column(Integer)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    release_id: Mapped[int | None] = mapped_column(Integer)
    app_id: Mapped[int | None] = mapped_column(Integer)
    phase: Mapped[int] = mapped_column(Integer)
    action_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Status before a cancel was asked: a device that rejects the cancel goes back to it.
    status_before_cancel: Mapped[str | None] = mapped_column(String(24))
    bytes_done: Mapped[int | None] = mapped_column(BigInteger)
    # A retry gave the device a newer attempt: this one no longer counts for the phase's progress.
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When it reached a final status (migration 0027): a rollout's progress over time is counted from it.
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StateChange(Base):
    """Something a device's poll answer depends on changed: one device (device_id) or a whole tenant (device_id null).

    Written in the same transaction as the change; every server process reads the new rows to drop its cached answers.
    """

    __tablename__ = "state_changes"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(Integer)
    device_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
