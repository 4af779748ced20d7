"""Typed wire models of the HTTP API: what every route answers (and the request bodies routes parse themselves).

The services build plain dicts; the routes name these models in their decorators, so FastAPI checks every answer
against them and the OpenAPI document describes every response. Each model keeps fields it does not know
(`extra="allow"`), so a field a service adds later reaches the client before its model learns it. The routes
serialize with `response_model_exclude_unset`: a key the service leaves out stays out (fields made with
`absent()` are such keys; they are never null).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bulkhead.protocol import ActionStatus, DdiExecution, DdiResult, DeviceStatus, EventKind, RolloutStatus, UpdatePhase

from .contract import ErrorOut

__all__ = [
    "ActionOut",
    "AppOut",
    "AuditEntry",
    "BootstrapCreated",
    "BootstrapOut",
    "DdiCancel",
    "DdiConfigDataIn",
    "DdiDeploymentBase",
    "DdiFeedbackIn",
    "DdiInstalledBaseIn",
    "DdiInstalledBaseOut",
    "DdiRoot",
    "DdiSettingsOut",
    "DeltaOut",
    "DeltaPlan",
    "DesiredOut",
    "DeviceEnrolled",
    "DeviceEventOut",
    "DeviceOut",
    "DeviceProvisioned",
    "DeviceState",
    "ErrorOut",
    "GroupWindowOut",
    "HalJsonResponse",
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
    "binary",
    "document_errors",
    "json_body",
]


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent(description: str, alias: str | None = None) -> Any:
    """A key the service leaves out when it does not apply: optional in the schema, never null on the wire."""
    return Field(None, alias=alias, description=description, json_schema_extra=_drop_default)


Time = Annotated[str, Field(description="ISO 8601 time")]
Role = Literal["viewer", "operator", "admin"]
ActionType = Literal["soft", "forced", "download_only"]


class Out(BaseModel):
    """Base of the wire models: unknown fields are kept."""

    model_config = ConfigDict(extra="allow")


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

    format: Literal["spdx", "cyclonedx"]
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
    """The device's own desired apps and file paths (its groups' come on top)."""

    apps: dict[str, str | None] = Field(description="app name -> version; null removes a group's app")
    files: list[str] = Field(description="paths of the device's own desired files")


class DeviceOut(Out):
    """A device: identity, groups and tags, what it reported, and its desired state."""

    id: int
    name: str
    compatible: str
    status: DeviceStatus
    tags: list[str]
    groups: list[str]
    attributes: dict[str, str]
    reported: dict[str, Any] = Field(description="the agent's last inventory, as it sent it")
    desired_release_id: int | None
    desired: DeviceDesiredSummary
    update: DeviceUpdateStatus
    bytes_served: int
    last_seen: Time | None


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


class DesiredSummary(Out):
    """A device's or group's own desired state after a change."""

    release_id: int | None
    apps: dict[str, str | None]
    files: list[FileSummary]


class DesiredOut(Out):
    """The changed desired state of a device or group."""

    target: Literal["device", "group"]
    ref: str
    desired: DesiredSummary


class ReportAccepted(Out):
    """How far the server has the device's events: the agent drops events up to this seq."""

    accepted_seq: int


# -- the device's desired state (agent protocol) ------------------------------------------------------


class ContainerSpec(Out):
    """One container of an app."""

    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    ports: list[str]
    volumes: list[str]
    restart: Literal["no", "always", "on-failure", "unless-stopped"]


class StateDevice(Out):
    """The device as its desired state names it."""

    id: int
    name: str
    tags: list[str]
    groups: list[str]
    attributes: dict[str, str]


class StateAction(Out):
    """A rollout's action for the device: whether it may install now."""

    id: int
    type: ActionType
    install: bool
    window_opens_at: Time | None = Field(description="when the maintenance window opens, if it is closed")


class AppAction(Out):
    """An app rollout's action the device runs now."""

    id: int
    type: ActionType
    install: bool


class PrefetchAction(AppAction):
    """An app rollout's action the device may only pull images for (outside its window, or download-only)."""

    window_opens_at: Time | None


class StateDelta(Out):
    """A delta bundle from the OS version the device runs: smaller than the full bundle."""

    id: int
    from_version: str
    sha256: str
    size: int
    url: str
    signed_url: str


class StateRelease(Out):
    """The OS release the device must run."""

    id: int
    version: str
    compatible: str
    format: str
    sha256: str
    size: int
    url: str
    signed_url: str = Field(description="a URL that needs no credential, valid for a while")
    action: StateAction | None
    delta: StateDelta = absent("a delta bundle to install instead of the full one")


class StateApp(Out):
    """An app the device must run."""

    name: str
    version: str
    containers: list[ContainerSpec]
    action: AppAction = absent("the app rollout's action, when one decided this version")


class PrefetchApp(Out):
    """An app version the device may only pull images for."""

    name: str
    version: str
    containers: list[ContainerSpec]
    action: PrefetchAction


class StateFile(Out):
    """A file the device must have."""

    path: str
    content_b64: str
    sha256: str
    mode: str
    template: bool
    on_change: str | None


class RegistryCredential(Out):
    """Credentials to pull images from one registry."""

    username: str
    password: str


class StateDesired(Out):
    """What the device must run."""

    release: StateRelease | None
    apps: list[StateApp]
    files: list[StateFile]
    registries: dict[str, RegistryCredential]
    prefetch: list[PrefetchApp] = absent("app versions to pull but not run yet")


class DeviceState(Out):
    """The device's desired state."""

    device: StateDevice
    desired: StateDesired
    poll_interval: int = Field(description="seconds until the next poll")


# -- apps -----------------------------------------------------------------------------------------


class AppOut(Out):
    """An app version: its containers (changed only by `PUT /api/v1/apps/{name}/{version}`)."""

    id: int
    name: str
    version: str
    containers: list[ContainerSpec]
    created_at: Time


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


# -- hawkBit DDI ----------------------------------------------------------------------------------


class DdiSettingsOut(Out):
    """The tenant's hawkBit DDI settings (the gateway token only right after it was issued)."""

    auto_register: bool = absent("create devices on their first poll with the gateway token")
    default_compatible: str = absent("compatible given to auto-registered devices")
    gateway_token_set: bool
    gateway_token: str = absent("the new GatewayToken; shown only now")


class DdiLink(Out):
    """A hawkBit link."""

    href: str


class DdiRootLinks(Out):
    """What the controller should do next."""

    deploymentBase: DdiLink = absent("an update to install")
    cancelAction: DdiLink = absent("an update to cancel")
    configData: DdiLink = absent("send your attributes")
    installedBase: DdiLink = absent("the last update installed")


class DdiPolling(Out):
    """hawkBit polling configuration."""

    sleep: str = Field(description="HH:MM:SS until the next poll", pattern=r"^\d{2}:\d{2}:\d{2}$")


class DdiConfig(Out):
    """hawkBit controller configuration."""

    polling: DdiPolling


class DdiRoot(Out):
    """hawkBit DDI controller base: polling interval and links to what to do next."""

    config: DdiConfig
    links: DdiRootLinks = absent("absent when there is nothing to do", alias="_links")


class DdiHashes(Out):
    """An artifact's hashes."""

    sha1: str
    md5: str
    sha256: str


class DdiArtifactLinks(Out):
    """Where to download an artifact and its MD5SUM file."""

    download: DdiLink
    download_http: DdiLink = Field(alias="download-http")
    md5sum: DdiLink
    md5sum_http: DdiLink = Field(alias="md5sum-http")


class DdiArtifact(Out):
    """A file of a software module."""

    filename: str
    hashes: DdiHashes
    size: int
    links: DdiArtifactLinks = Field(alias="_links")


class DdiChunk(Out):
    """A software module of a deployment."""

    part: str
    version: str
    name: str
    artifacts: list[DdiArtifact]


DdiHandling = Literal["skip", "attempt", "forced"]


class DdiDeployment(Out):
    """How to download and install, and what."""

    download: DdiHandling
    update: DdiHandling
    maintenanceWindow: Literal["available", "unavailable"] = absent("only when a maintenance window applies")
    chunks: list[DdiChunk]


class DdiActionHistory(Out):
    """The action's status and its latest history messages (with ?actionHistory=N)."""

    status: ActionStatus
    messages: list[str]


class DdiDeploymentBase(Out):
    """hawkBit DDI deploymentBase (or installedBase): an update for the controller."""

    id: str
    deployment: DdiDeployment
    actionHistory: DdiActionHistory = absent("with ?actionHistory=N")


class DdiCancelAction(Out):
    """Which action to stop."""

    stopId: str


class DdiCancel(Out):
    """hawkBit DDI cancelAction: stop an update."""

    id: str
    cancelAction: DdiCancelAction


class DdiInstalledBaseOut(Out):
    """What the server made of the device's declaration."""

    release_id: int | None = Field(description="the release with this version, if the server has it")
    version: str


class DdiProgress(BaseModel):
    """Progress of an action: cnt of of."""

    cnt: int
    of: int | None = None


class DdiFeedbackResult(BaseModel):
    """The result so far."""

    finished: DdiResult = DdiResult.NONE
    progress: DdiProgress | None = None


class DdiFeedbackStatus(BaseModel):
    """The action's execution state."""

    execution: DdiExecution
    result: DdiFeedbackResult | None = None
    details: list[str] | None = Field(None, description="messages (at most 20 are kept)")
    code: int | None = None


class DdiFeedbackIn(BaseModel):
    """hawkBit DDI feedback on an action (deploymentBase or cancelAction)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    time: str | None = None
    timestamp: int | None = None
    status: DdiFeedbackStatus


class DdiConfigDataIn(BaseModel):
    """hawkBit DDI configData: the controller's attributes."""

    model_config = ConfigDict(extra="allow")

    mode: Literal["merge", "replace", "remove"] = "merge"
    data: dict[str, str | int | float | bool] = Field(description="attribute -> value (at most 128 characters)")


class DdiInstalledBaseIn(BaseModel):
    """What the controller runs (after an update outside the server, or at first contact)."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    version: str = Field(min_length=1)


class HalJsonResponse(JSONResponse):
    """JSON with hawkBit's media type (documents the DDI root, which the poll app answers)."""

    media_type = "application/hal+json"


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` inlined (an OpenAPI operation cannot hold its own `$defs`)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


def json_body(model: type[BaseModel], media_type: str = "application/json") -> dict[str, Any]:
    """`openapi_extra` documenting a request body a route reads itself (its parsing gives the precise errors)."""
    return {"requestBody": {"required": True, "content": {media_type: {"schema": _inline(model.model_json_schema())}}}}


def binary(*media_types: str, description: str = "The file") -> dict[int | str, dict[str, Any]]:
    """`responses` of a route that answers a file or raw bytes."""
    schema = {"type": "string", "format": "binary"}
    return {200: {"description": description, "content": {m: {"schema": schema} for m in media_types}}}


def document_errors(api: FastAPI) -> None:
    """Document the server's error body on every operation: a `4XX` answer is an `ErrorOut`.

    It replaces FastAPI's own `422` entry, whose `{"detail": [...]}` the server never sends (its validation
    handler answers `{"error": "invalid", "message": ...}`). Done on the generated document (FastAPI's way
    to extend it), so routes added later get it too.
    """
    generate = api.openapi
    error = {
        "description": "Refused; `message` says what to do",
        "content": {"application/json": {"schema": _inline(ErrorOut.model_json_schema())}},
    }
    fastapi_422 = "#/components/schemas/HTTPValidationError"

    def openapi() -> dict[str, Any]:
        doc = api.openapi_schema
        if doc is None:
            doc = generate()
            for ops in doc.get("paths", {}).values():
                for op in ops.values():
                    responses = op.setdefault("responses", {})
                    schema = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
                    if schema.get("$ref") == fastapi_422:
                        del responses["422"]
                    responses.setdefault("4XX", error)
                    for code, resp in responses.items():
                        content = resp.get("content") or {}
                        if code[0] in "45" and content and "application/json" not in content:
                            # A route with its own media type (hal+json) still answers errors as plain JSON.
                            resp["content"] = {"application/json": next(iter(content.values()))}
            components = doc.get("components", {}).get("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        return doc

    api.openapi = openapi  # type: ignore[method-assign]
