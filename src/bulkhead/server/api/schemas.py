"""Typed wire models of the management and device API: what every route answers (hawkBit's are in ddi_schemas).

The services build plain dicts; the routes name these models in their decorators, so FastAPI checks every answer
against them and the OpenAPI document describes every response. Each model keeps fields it does not know
(`extra="allow"`), so a field a service adds later reaches the client before its model learns it. The routes
serialize with `response_model_exclude_unset`: a key the service leaves out stays out (fields made with
`absent()` are such keys; they are never null).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bulkhead.protocol import ActionStatus, DeviceStatus, EventKind, RolloutStatus, UpdatePhase

from .contract import ErrorOut
from .state_schemas import ContainerSpec
from .wire import ActionType, Out, Role, Time, absent

__all__ = [
    "ActionOut",
    "AppOut",
    "AuditEntry",
    "BootstrapCreated",
    "BootstrapOut",
    "DeltaOut",
    "DeltaPlan",
    "DesiredOut",
    "DeviceEnrolled",
    "DeviceEventOut",
    "DeviceOut",
    "DeviceProvisioned",
    "ErrorOut",
    "GroupWindowOut",
    "Health",
    "KeyringOut",
    "KeyringSet",
    "OwnTenant",
    "RegistrySet",
    "ReleaseOut",
    "ReportAccepted",
    "RolloutOut",
    "SbomOut",
    "SigningInfo",
    "TenantCreated",
    "TenantOut",
    "TokenCreated",
    "UserOut",
]


# -- meta, tenants, users, keyring --------------------------------------------------------------------


class Health(Out):
    """The server is up; its version."""

    status: Literal["ok"]
    version: str


class TenantCreated(Out):
    """A new tenant and its admin user's first API token (shown once)."""

    id: int
    name: str
    admin_user: str
    token: str = Field(description="the admin's API token; shown only now")


class TenantOut(Out):
    """A tenant as the server administrator sees it."""

    id: int
    name: str
    keyring: bool = Field(description="whether the tenant has a keyring to verify uploads")


class OwnTenant(Out):
    """The caller's tenant (its name is the DDI API's {tenant}) and the caller's role."""

    id: int
    name: str
    role: Role


class UserOut(Out):
    """A user of the tenant."""

    id: int
    name: str
    role: Role


class TokenCreated(Out):
    """A new API token (shown once)."""

    name: str
    user: str
    role: Role
    token: str = Field(description="the API token; shown only now")
    expires_at: Time | None


class KeyringSet(Out):
    """The tenant keyring's trust anchors after setting it."""

    anchors: list[str] = Field(description="subjects of the trust anchors (RFC 4514)")
    check_purpose: str


class KeyringOut(Out):
    """The tenant keyring: its trust anchors and PEM text (null without a keyring)."""

    anchors: list[str] = Field(description="subjects of the trust anchors (RFC 4514)")
    check_purpose: str
    pem: str | None


# -- releases -----------------------------------------------------------------------------------------


class SbomOut(Out):
    """An SBOM attached to a release."""

    format: Literal["spdx", "spdx3", "cyclonedx"] = Field(
        description="spdx: SPDX 2.2/2.3 JSON, spdx3: SPDX 3.0.1 JSON-LD, cyclonedx"
    )
    spec_version: str
    components: int
    sha256: str
    size: int
    created_at: Time


class ReleaseImage(Out):
    """One image of a RAUC bundle's manifest."""

    slotclass: str
    variant: str | None
    filename: str
    size: int | None
    sha256: str | None
    adaptive: list[str]
    hooks: list[str]


class ReleaseOut(Out):
    """A release: a verified RAUC bundle or SWUpdate image for one compatible."""

    id: int
    compatible: str
    version: str
    description: str | None
    build: str | None
    format: str = Field(description="RAUC bundle format (plain, verity, crypt) or swu")
    sha256: str
    size: int
    signer: str | None
    images: list[ReleaseImage] = Field(description="the bundle's images (empty for a .swu)")
    created_at: Time
    sboms: list[SbomOut]
    security: dict[str, Any] | None = Field(
        None, description="a security update's mark: since when (available_at), by whom (marked_by), why (reason); else null"
    )


# -- devices ------------------------------------------------------------------------------------------


class BootstrapCreated(Out):
    """A new bootstrap token (shown once) that devices exchange for their own credential."""

    id: int
    name: str
    token: str = Field(description="the bootstrap token; shown only now")
    group: str | None
    requires_approval: bool
    max_uses: int | None
    expires_at: Time | None


class BootstrapOut(Out):
    """A bootstrap token (without its secret)."""

    id: int
    name: str
    group: str | None
    revoked: bool
    uses: int
    max_uses: int | None
    requires_approval: bool
    expires_at: Time | None


class DeviceEnrolled(Out):
    """The enrolled device and its credential (shown once)."""

    device_id: int
    name: str
    credential: str = Field(description="the device's bearer token; shown only now")
    status: DeviceStatus


class DeviceProvisioned(Out):
    """A device created ahead of time; its credential is also its DDI TargetToken (shown once)."""

    device_id: int
    name: str
    credential: str
    target_token: str


class DeviceUpdateStatus(Out):
    """The latest update status the device reported (empty before its first report)."""

    phase: str = absent("agent update phase, or the action status a hawkBit client's feedback set")
    release_id: int | None = Field(None, description="the release the status is about")
    version: Any = absent("as the agent reported it")
    reason: Any = absent("as the agent reported it")
    progress: Any = absent("as the agent reported it")
    slot: Any = absent("as the agent reported it")
    at: Time = absent("when the status was reported")
    source: str = absent("'ddi' when a hawkBit client's feedback set it")


class DeviceDesiredSummary(Out):
    """The device's own desired apps, file paths and packages (its groups' come on top)."""

    apps: dict[str, str | None] = Field(description="app name -> version; null removes a group's app")
    files: list[str] = Field(description="paths of the device's own desired files")
    packages: dict[str, DesiredPackage] = Field(
        default_factory=dict, description="the device's own desired Debian packages (a package rollout adds its set)"
    )


class _DeviceFields(Out):
    """What every view of a device shows: identity, groups and tags, desired release, update status, last seen."""

    id: int
    name: str
    compatible: str
    status: DeviceStatus
    tags: list[str]
    groups: list[str]
    attributes: dict[str, str]
    desired_release_id: int | None
    update: DeviceUpdateStatus
    bytes_served: int
    last_seen: Time | None


class DeviceOut(_DeviceFields):
    """A device: identity, groups and tags, what it reported, and its desired state."""

    reported: dict[str, Any] = Field(description="the agent's last inventory, as it sent it")
    desired: DeviceDesiredSummary
    security_events: dict[str, int] = Field(
        default_factory=dict, description="the device's security events per kind (GET /devices/{ref}/security-events)"
    )
    credential_epoch: int = Field(0, description="raised by every credential reset, rotation, re-enrollment and disable")
    factory_reset_requested_at: Time | None = Field(
        None, description="when a factory reset was asked for that the device has not carried out yet (else null)"
    )


class DeviceRow(_DeviceFields):
    """A device in the device list: identity, groups and tags, OS version, update status, last seen.

    No inventory and no desired state: the device's own endpoint (`GET /api/v1/devices/{ref}`) has them.
    """

    os_version: str | None = Field(description="the OS version the device last reported")


class DeviceEventOut(Out):
    """One entry of a device's reported history (kind and phase are open: hawkBit clients report too)."""

    seq: int
    kind: str = Field(description=f"what the event is about: {', '.join(EventKind)} from the agent")
    phase: str | None = Field(description=f"an agent's update phase ({', '.join(UpdatePhase)}), or a hawkBit client's")
    release_id: int | None
    details: dict[str, Any]
    device_time: Time | None = Field(description="the time the device gave")
    at: Time = Field(description="when the server received it")


class FileSummary(Out):
    """A desired file without its content."""

    path: str
    sha256: str
    mode: str


class DesiredPackage(Out):
    """A Debian package the device must have (at `version`; null: the newest), hold, or remove."""

    name: str
    version: str | None
    hold: bool
    remove: bool


class DesiredSummary(Out):
    """A device's or group's own desired state after a change."""

    release_id: int | None
    apps: dict[str, str | None]
    files: list[FileSummary]
    packages: dict[str, DesiredPackage] = Field(default_factory=dict, description="Debian packages, by name")


class DesiredOut(Out):
    """The changed desired state of a device or group."""

    target: Literal["device", "group"]
    ref: str
    desired: DesiredSummary


class ReportAccepted(Out):
    """How far the server has the device's events: the agent drops events up to this seq."""

    accepted_seq: int


# -- apps -----------------------------------------------------------------------------------------


class AppOut(Out):
    """An app version: its containers (changed only by `PUT /api/v1/apps/{name}/{version}`)."""

    id: int
    name: str
    version: str
    containers: list[ContainerSpec]
    created_at: Time
    sbom: SbomOut | None = Field(None, description="its CycloneDX SBOM (`PUT /api/v1/apps/{name}/{version}/sbom`), if any")


class RegistrySet(Out):
    """A registry's credentials were stored (the password is not shown)."""

    host: str
    username: str


# -- rollouts -------------------------------------------------------------------------------------


class RolloutTarget(Out):
    """Which devices a rollout is for: every given condition must hold."""

    tags: list[str] = Field(description="all of these")
    groups: list[str] = Field(description="any of these")
    compatible: str | None
    attributes: dict[str, str]


class Window(Out):
    """A maintenance window: installs start only within it."""

    cron: str
    duration_minutes: int
    timezone: str


class RolloutApp(Out):
    """The app version an app rollout runs."""

    id: int
    name: str
    version: str


class PhaseOut(Out):
    """A rollout phase and its progress."""

    name: str
    group: str | None
    percent: int | None
    success_threshold: int
    error_threshold: int
    index: int
    state: str = Field(description="done, running or waiting (more may come: the phase's own progress)")
    devices: int
    counts: dict[ActionStatus, int]
    bytes: int


class RolloutOut(Out):
    """A rollout with its progress per phase."""

    id: int
    name: str
    subject: str = Field(description="what it installs, in words")
    release_id: int | None
    app: RolloutApp | None
    packages: dict[str, DesiredPackage] = absent("a package rollout's Debian packages, by name")
    target: RolloutTarget
    type: ActionType
    window: Window | None
    start_at: Time | None
    requires_approval: bool
    status: RolloutStatus
    current_phase: int
    pause_reason: str | None
    phases: list[PhaseOut]
    counts: dict[ActionStatus, int]
    devices: int
    created_by: str
    created_at: Time
    retried: int = absent("after retry: how many devices got a new attempt")


class TimelinePoint(Out):
    """Devices in each final state at the end of one step (cumulative; each device's newest attempt)."""

    at: Time
    succeeded: int = Field(description="succeeded (a download-only action: downloaded)")
    failed: int = Field(description="failed or rolled back")
    canceled: int


class RolloutTimelineOut(Out):
    """A rollout's progress over time, in at most 60 equal steps from its start to now (or to its last close)."""

    start: Time
    step_seconds: float
    points: list[TimelinePoint]


class HistoryEntry(Out):
    """One entry of an action's history."""

    at: Time
    status: ActionStatus
    source: str = Field(description="server or device")
    message: str = absent("what happened")


class ActionOut(Out):
    """One device's part in a rollout."""

    id: int
    rollout_id: int
    device_id: int
    device: str | None = Field(description="the device's name")
    release_id: int | None
    app_id: int | None
    phase: int
    type: ActionType
    status: ActionStatus
    active: bool
    bytes: int
    history: list[HistoryEntry]
    updated_at: Time


class GroupWindowOut(Out):
    """A group's maintenance window."""

    group: str
    window: Window | None


class AuditEntry(Out):
    """One audit event: who did what to which object."""

    at: Time
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


# -- deltas ---------------------------------------------------------------------------------------


class DeltaOut(Out):
    """A delta bundle that makes a release from one source release."""

    id: int
    release_id: int
    source_release_id: int
    source_version: str
    status: Literal["ready", "building", "failed"]
    error: str | None
    origin: Literal["upload", "server"]
    sha256: str = Field(description="empty while the server builds it")
    size: int
    ratio: float | None = Field(description="size relative to the full bundle")
    signer: str | None
    created_at: Time
    message: str = absent("after a build request: what happens next")


class DeltaPlanRelease(Out):
    """The release a delta plan is for."""

    id: int
    compatible: str
    version: str
    size: int


class DeltaSource(Out):
    """An OS version devices run, and whether they have a delta to the release."""

    version: str | None = Field(description="null: devices that have not reported one")
    devices: int
    release_id: int | None
    delta: DeltaOut | None
    advice: str


class DeltaPlan(Out):
    """The OS versions the devices of a release's compatible run, and which of them have a delta to it."""

    release: DeltaPlanRelease
    devices_on_release: int
    sources: list[DeltaSource]
    max_ratio: float
    server_signing: bool


class SigningInfo(Out):
    """Whether the server holds a key to sign the delta bundles it builds, and whose."""

    server_signing: bool
    subject: str | None = absent("the signing certificate's subject")
    set_by: str | None = absent("who gave the key")
    set_at: Time | None = absent("when")
    message: str
