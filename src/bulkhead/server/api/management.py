"""Management API (/api/v1): tenants, users, tokens, keyring, releases, devices."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bulkhead.protocol import DeviceStatus

from ..ids import MAX_ID, DbId
from ..services.auth import Principal
from ..services.device_history import event_page
from ..services.device_list import DeviceFilter
from ..services.releases import MAX_SBOM_BYTES
from ..services.sbom_export import export_release_sbom
from . import schemas, wire
from .deps import Services, principal, receive_upload, services
from .device_filters import device_filter
from .fields import BodyId, LongText, Name, Names, PathName, Text
from .paging import PAGED, Pager, pager
from .stored import stored_response

router = APIRouter(prefix="/api/v1")


class TenantIn(BaseModel):
    name: Name
    admin_user: Name = "admin"


class UserIn(BaseModel):
    name: Name
    role: Name


class TokenIn(BaseModel):
    name: Name
    user: Name | None = None
    role: Name | None = None
    expires_in_days: int | None = Field(None, ge=1, le=36500)


class KeyringIn(BaseModel):
    pem: LongText
    check_purpose: str = Field("smimesign", max_length=16)


class BootstrapIn(BaseModel):
    name: Name
    group: Name | None = None
    expires_in_hours: float | None = Field(24.0, gt=0, le=24 * 36500, allow_inf_nan=False)
    requires_approval: bool = False
    max_uses: int | None = Field(None, ge=1, le=MAX_ID)


class TagsIn(BaseModel):
    add: Names = Field(default_factory=list)
    remove: Names = Field(default_factory=list)


class DesiredIn(BaseModel):
    release_id: BodyId | None
    allow_downgrade: bool = Field(False, description="accept a release older than the device runs")


class AppIn(BaseModel):
    name: Name
    version: Name
    containers: list[dict[str, Any]] | None = Field(None, max_length=64)
    compose: LongText | None = Field(None, description="A compose file's text instead of 'containers'")
    sbom: dict[str, Any] | None = Field(
        None,
        description="The version's CycloneDX 1.4-1.6 SBOM (JSON object); a larger one than this request's limit is "
        "attached afterwards with `PUT /api/v1/apps/{name}/{version}/sbom`",
    )


class RegistryIn(BaseModel):
    host: Name
    username: Name
    password: Text


class PackageIn(BaseModel):
    """A package the devices must have at `version` (null: the newest their sources offer), hold, or remove."""

    model_config = ConfigDict(extra="forbid")
    version: Name | None = None
    hold: bool = False
    remove: bool = False


class DesiredPatch(BaseModel):
    """Only the fields given change. App version null removes the app."""

    apps: dict[Name, Name | None] | None = Field(None, max_length=256)
    files: list[dict[str, Any]] | None = Field(None, max_length=256)
    remove_files: list[Annotated[str, StringConstraints(max_length=4096)]] | None = Field(None, max_length=256)
    packages: dict[Name, PackageIn | None] | None = Field(
        None, max_length=256, description="Debian packages (from the overlay or the device's sources); null removes one"
    )


class GroupDesiredPatch(DesiredPatch):
    release_id: BodyId | None = Field(None, description="The group's OS release (devices may override it)")
    allow_downgrade: bool = Field(False, description="accept a release older than the group's or its devices'")


@router.post(
    "/tenants", status_code=201, tags=["tenants"], response_model=schemas.TenantCreated, response_model_exclude_unset=True
)
def create_tenant(body: TenantIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Create a tenant with an admin user; returns that user's first API token (shown once)."""
    return svc.tenants.create_tenant(who, body.name, body.admin_user)


@router.get(
    "/tenants", tags=["tenants"], response_model=list[schemas.TenantOut], response_model_exclude_unset=True, responses=PAGED
)
def list_tenants(
    pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    return pg.send(svc.tenants.list_tenants(who, pg.page))


@router.post("/users", status_code=201, tags=["users"], response_model=schemas.UserOut, response_model_exclude_unset=True)
def create_user(body: UserIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.tenants.create_user(who, body.name, body.role)


@router.get("/users", tags=["users"], response_model=list[schemas.UserOut], response_model_exclude_unset=True, responses=PAGED)
def list_users(
    pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    return pg.send(svc.tenants.list_users(who, pg.page))


@router.post("/tokens", status_code=201, tags=["users"], response_model=schemas.TokenCreated, response_model_exclude_unset=True)
def create_token(body: TokenIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Create an API token (e.g. for a CI pipeline); the token is shown once."""
    return svc.tenants.create_token(who, body.name, body.user, body.role, body.expires_in_days)


@router.put("/keyring", tags=["keyring"], response_model=schemas.KeyringSet, response_model_exclude_unset=True)
def set_keyring(body: KeyringIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Set the tenant's PEM trust anchors used to verify uploaded bundles."""
    return svc.tenants.set_keyring(who, body.pem.encode(), body.check_purpose)


@router.get("/keyring", tags=["keyring"], response_model=schemas.KeyringOut, response_model_exclude_unset=True)
def get_keyring(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.tenants.get_keyring(who)


@router.post(
    "/releases",
    status_code=201,
    tags=["releases"],
    response_model=schemas.ReleaseOut,
    response_model_exclude_unset=True,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_release(
    request: Request,
    compatible: str | None = None,
    security: bool = Query(False, description="mark it a security update (installed by policy, see docs/cra.md)"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Upload a signed RAUC bundle or SWUpdate .swu as the raw request body; it is verified before it is stored.

    A .swu does not name its devices: `compatible` (or the tenant's DDI default) says which ones it is for.
    """
    who.require("operator")
    who.require_tenant()
    upload = await receive_upload(request, svc, svc.settings.max_upload_bytes)
    out: dict[str, Any] = await run_in_threadpool(svc.releases.ingest, who, upload, compatible)
    if security and svc.security is not None:
        out["security"] = await run_in_threadpool(svc.security.mark, who, out["id"])
    return out


@router.put(
    "/releases/{release_id}/sbom",
    tags=["releases"],
    response_model=schemas.SbomOut,
    response_model_exclude_unset=True,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "description": "SPDX 2.2/2.3, SPDX 3.0.1 JSON-LD or CycloneDX 1.4-1.6"}
                }
            },
        }
    },
)
async def attach_sbom(
    release_id: DbId, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Attach an SBOM (SPDX or CycloneDX JSON, the raw request body) to a release; one per format, a new one replaces it."""
    who.require("operator")
    upload = await receive_upload(request, svc, MAX_SBOM_BYTES)
    return await run_in_threadpool(svc.releases.attach_sbom, who, release_id, upload)


@router.get(
    "/releases/{release_id}/sbom",
    tags=["releases"],
    response_class=FileResponse,
    responses=wire.binary("application/spdx+json", "application/vnd.cyclonedx+json", description="The SBOM document"),
)
def get_sbom(
    release_id: DbId,
    format: str | None = Query(None, description="spdx, spdx3 or cyclonedx; default: SPDX if the release has one"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> Response:
    """Download a release's SBOM as it was attached."""
    sha256, media_type = svc.releases.sbom_file(who, release_id, format)
    return stored_response(svc.store, sha256, media_type)


@router.get(
    "/releases/{release_id}/sbom/export",
    tags=["releases"],
    response_class=Response,
    responses=wire.binary(
        "application/vnd.cyclonedx+json",
        "application/spdx+json",
        description="The release's SBOM: its components (from its attached SBOMs) and the release (compatible, "
        "version, bundle sha256), as CycloneDX 1.6 JSON, SPDX 2.3 JSON or SPDX 3.0.1 JSON-LD",
    ),
)
def export_sbom(
    release_id: DbId,
    format: str = Query(..., max_length=16, description="cyclonedx (CycloneDX 1.6), spdx (SPDX 2.3) or spdx3 (SPDX 3.0.1)"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> Response:
    """Export a release's SBOM, written by the server from the components it knows (viewer role)."""
    out = export_release_sbom(svc.releases, who, release_id, format)
    return Response(
        out.text, media_type=out.media_type, headers={"content-disposition": f'attachment; filename="{out.filename}"'}
    )


@router.get(
    "/releases", tags=["releases"], response_model=list[schemas.ReleaseOut], response_model_exclude_unset=True, responses=PAGED
)
def list_releases(
    compatible: str | None = Query(None, max_length=256, description="only releases for this compatible"),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """The tenant's releases by id, a page at a time."""
    return pg.send(svc.releases.list_releases(who, compatible, pg.page))


@router.get("/releases/{release_id}", tags=["releases"], response_model=schemas.ReleaseOut, response_model_exclude_unset=True)
def show_release(release_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.releases.get(who, release_id)


@router.delete("/releases/{release_id}", status_code=204, tags=["releases"])
def delete_release(release_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> None:
    """Delete a release; refused while a device still needs it."""
    svc.releases.delete(who, release_id)


@router.post(
    "/bootstrap-tokens",
    status_code=201,
    tags=["devices"],
    response_model=schemas.BootstrapCreated,
    response_model_exclude_unset=True,
)
def create_bootstrap(body: BootstrapIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.devices.create_bootstrap(who, body.name, body.group, body.expires_in_hours, body.requires_approval, body.max_uses)


@router.get(
    "/bootstrap-tokens",
    tags=["devices"],
    response_model=list[schemas.BootstrapOut],
    response_model_exclude_unset=True,
    responses=PAGED,
)
def list_bootstrap(
    pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    return pg.send(svc.devices.list_bootstrap(who, pg.page))


@router.delete("/bootstrap-tokens/{token_id}", status_code=204, tags=["devices"])
def revoke_bootstrap(token_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> None:
    svc.devices.revoke_bootstrap(who, token_id)


@router.get(
    "/devices", tags=["devices"], response_model=list[schemas.DeviceRow], response_model_exclude_unset=True, responses=PAGED
)
def list_devices(
    filters: DeviceFilter = Depends(device_filter),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> Response:
    """The tenant's devices by id, a page at a time, filtered in the database; every filter given must match.

    A row has no inventory (`reported`) nor desired state: `GET /devices/{ref}` has them.
    """
    # The page comes as JSON text (PostgreSQL writes it): the route's model describes it, tests check it.
    return pg.send_json(svc.devices.list_devices_json(who, filters, pg.page))


@router.get("/devices/{ref}", tags=["devices"], response_model=schemas.DeviceOut, response_model_exclude_unset=True)
def show_device(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.devices.show(who, ref)


@router.post("/devices/{ref}/approve", tags=["devices"], response_model=schemas.DeviceOut, response_model_exclude_unset=True)
def approve_device(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.devices.approve(who, ref)


@router.post("/devices/{ref}/tags", tags=["devices"], response_model=schemas.DeviceOut, response_model_exclude_unset=True)
def tag_device(ref: str, body: TagsIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.devices.tag(who, ref, body.add, body.remove)


@router.put(
    "/devices/{ref}/desired-release", tags=["devices"], response_model=schemas.DeviceOut, response_model_exclude_unset=True
)
def set_desired(
    ref: str, body: DesiredIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    return svc.devices.set_desired_release(who, ref, body.release_id, allow_downgrade=body.allow_downgrade)


@router.patch("/devices/{ref}/desired", tags=["devices"], response_model=schemas.DesiredOut, response_model_exclude_unset=True)
def patch_device_desired(
    ref: str, body: DesiredPatch, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Set this device's apps and files (they override its groups')."""
    return svc.apps.set_desired(who, "device", ref, "keep", body.apps, body.files, body.remove_files, packages=_packages(body))


@router.patch("/groups/{name}/desired", tags=["devices"], response_model=schemas.DesiredOut, response_model_exclude_unset=True)
def patch_group_desired(
    name: PathName, body: GroupDesiredPatch, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Set a group's release, apps and files, shared by every device in the group."""
    release: int | str | None = body.release_id if "release_id" in body.model_fields_set else "keep"
    return svc.apps.set_desired(
        who,
        "group",
        name,
        release,
        body.apps,
        body.files,
        body.remove_files,
        allow_downgrade=body.allow_downgrade,
        packages=_packages(body),
    )


def _packages(body: DesiredPatch) -> dict[str, dict[str, Any] | None] | None:
    if body.packages is None:
        return None
    return {n: (p.model_dump() if p is not None else None) for n, p in body.packages.items()}


@router.get(
    "/devices/{ref}/events",
    tags=["devices"],
    response_model=list[schemas.DeviceEventOut],
    response_model_exclude_unset=True,
    responses=PAGED,
)
def device_events(
    ref: str, pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """The device's reported history, newest first, a page at a time."""
    who.require("viewer")
    tid = who.require_tenant()
    with svc.db.session() as s:
        return pg.send(event_page(s, tid, ref, pg.page))


@router.post("/apps", status_code=201, tags=["apps"], response_model=schemas.AppOut, response_model_exclude_unset=True)
def create_app(body: AppIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Create an immutable app version from container specs or a compose file."""
    return svc.apps.create(who, body.name, body.version, body.containers, body.compose, body.sbom)


@router.get("/apps", tags=["apps"], response_model=list[schemas.AppOut], response_model_exclude_unset=True, responses=PAGED)
def list_apps(
    name: str | None = Query(None, max_length=128, description="only this app's versions"),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """App versions by name and id, a page at a time."""
    return pg.send(svc.apps.list_apps(who, name, pg.page))


@router.put("/registries", tags=["apps"], response_model=schemas.RegistrySet, response_model_exclude_unset=True)
def set_registry(body: RegistryIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Credentials devices use to pull app images from a registry (sent only to devices that need them)."""
    return svc.apps.set_registry(who, body.host, body.username, body.password)


@router.get("/tenant", tags=["tenants"], response_model=schemas.OwnTenant, response_model_exclude_unset=True)
def own_tenant(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """The caller's tenant: its name (the DDI API's {tenant}) and your role."""
    who.require("viewer")
    return {"id": who.require_tenant(), "name": who.tenant, "role": who.role}


# -- identity and lifecycle: API tokens, users, device credentials ------------------------------


class ApiTokenOut(BaseModel):
    """An API token (never its secret): whose, its role, expiry and whether it is revoked."""

    id: int
    name: str
    user: str
    role: str
    revoked: bool
    created_at: str | None
    expires_at: str | None


class UserDeletedOut(BaseModel):
    """The removed user and how many of its tokens were revoked with it."""

    name: str
    role: str
    deleted: bool
    tokens_revoked: int = Field(description="How many API tokens of the user were revoked with it")


class DeviceLifecycleOut(BaseModel):
    """A device after a reset, disable or enable: its status and credential epoch."""

    id: int
    name: str
    status: DeviceStatus
    credential_epoch: int = Field(description="Raised by every reset, rotation and disable; signed URLs carry it")
    reenroll_allowed: bool = Field(description="The next enrollment under this name may take it (once)")
    factory_reset_requested_at: str | None = Field(
        None, description="When a factory reset was asked for that the device has not carried out yet (else null)"
    )
    credential: str | None = Field(None, description="A provisioned device's new credential (TargetToken), shown once")


class DeviceDeletedOut(BaseModel):
    """The decommissioned device."""

    id: int
    name: str
    deleted: bool


@router.get("/tokens", tags=["users"], response_model=list[ApiTokenOut], responses=PAGED)
def list_tokens(
    pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """The tenant's API tokens (not their secrets); admins only."""
    return pg.send(svc.tenants.list_tokens(who, pg.page))


@router.delete("/tokens/{token_id}", tags=["users"], response_model=ApiTokenOut)
def revoke_token(token_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Revoke an API token: every server process refuses it within a second. The last usable admin token stays."""
    return svc.tenants.revoke_token(who, token_id)


@router.delete("/users/{name}", tags=["users"], response_model=UserDeletedOut)
def delete_user(name: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Remove a user and their API tokens; refused for the tenant's last admin."""
    return svc.tenants.delete_user(who, name)


@router.post("/devices/{ref}/reset-credential", tags=["devices"], response_model=DeviceLifecycleOut)
def reset_device_credential(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Revoke the device's credential and signed URLs; an enrolled device may then enroll once more under its name
    (pending again if the bootstrap token requires approval); a provisioned device gets its new credential here."""
    return svc.devices.reset_credential(who, ref)


@router.post("/devices/{ref}/factory-reset", tags=["devices"], response_model=DeviceLifecycleOut)
def factory_reset_device(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Admin: the device erases its data partition (apps' volumes, its state, its credential) at its next poll and
    reboot, then enrolls again with the credential it held; pending until then (`factory_reset_requested_at`)."""
    return svc.devices.factory_reset(who, ref)


@router.delete("/devices/{ref}/factory-reset", tags=["devices"], response_model=DeviceLifecycleOut)
def cancel_factory_reset(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Admin: withdraw a factory reset the device has not carried out yet."""
    return svc.devices.factory_reset(who, ref, cancel=True)


@router.post("/devices/{ref}/disable", tags=["devices"], response_model=DeviceLifecycleOut)
def disable_device(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Stop serving the device (403, no artifacts, its signed URLs die) until it is enabled."""
    return svc.devices.disable(who, ref)


@router.post("/devices/{ref}/enable", tags=["devices"], response_model=DeviceLifecycleOut)
def enable_device(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.devices.enable(who, ref)


@router.delete("/devices/{ref}", tags=["devices"], response_model=DeviceDeletedOut)
def delete_device(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Decommission a device: its credential, signed URLs, history and rollout actions go (admins only)."""
    return svc.devices.delete(who, ref)
