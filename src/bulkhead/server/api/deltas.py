"""Delta bundles of a release (/api/v1/releases/{id}/deltas), the fleet's plan, and the server's signing key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ..ids import DbId
from ..services.auth import Principal
from . import schemas
from .deps import Services, principal, receive_upload, services
from .fields import LongText, Name
from .paging import PAGED, Pager, pager

router = APIRouter(prefix="/api/v1", tags=["deltas"])

_BINARY = {
    "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
}


@router.post(
    "/releases/{release_id}/deltas",
    status_code=201,
    openapi_extra=_BINARY,
    response_model=schemas.DeltaOut,
    response_model_exclude_unset=True,
)
async def upload_delta(
    release_id: DbId, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Upload a delta bundle that makes this release (`bulkhead delta create`); it is verified before it is stored.

    Its source release is found from the patch headers (the sha256 of the images it patches).
    """
    who.require("operator")
    who.require_tenant()
    upload = await receive_upload(request, svc, svc.settings.max_upload_bytes)
    return await run_in_threadpool(svc.deltas.ingest, who, release_id, upload)


@router.get(
    "/releases/{release_id}/deltas", response_model=list[schemas.DeltaOut], response_model_exclude_unset=True, responses=PAGED
)
def list_deltas(
    release_id: DbId, pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    return pg.send(svc.deltas.list_deltas(who, release_id, pg.page))


@router.delete("/releases/{release_id}/deltas/{delta_id}", status_code=204)
def delete_delta(
    release_id: DbId, delta_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> None:
    """Delete a delta bundle; devices on its source version get the full bundle from then on."""
    svc.deltas.delete(who, release_id, delta_id)


@router.get("/releases/{release_id}/delta-plan", response_model=schemas.DeltaPlan, response_model_exclude_unset=True)
def delta_plan(release_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """The OS versions the devices of this release's compatible run, and which of them have a delta to it."""
    return svc.deltas.plan(who, release_id)


class BuildIn(BaseModel):
    source_version: Name = Field(description="the version the devices run now")


@router.post(
    "/releases/{release_id}/deltas/build", status_code=202, response_model=schemas.DeltaOut, response_model_exclude_unset=True
)
def build_delta(
    release_id: DbId, body: BuildIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Have the server build the delta from `source_version` in the background; only with a tenant signing key."""
    return svc.deltas.request_build(who, release_id, body.source_version)


class SigningIn(BaseModel):
    cert_pem: LongText
    key_pem: LongText


@router.get("/delta-signing", response_model=schemas.SigningInfo, response_model_exclude_unset=True)
def get_signing(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Whether the server holds a key to sign the delta bundles it builds, and whose."""
    return svc.deltas.get_signing(who)


@router.put("/delta-signing", response_model=schemas.SigningInfo, response_model_exclude_unset=True)
def set_signing(body: SigningIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Give the server a signing key (its certificate must chain to the tenant keyring) to build delta bundles itself."""
    return svc.deltas.set_signing_key(who, body.cert_pem, body.key_pem)


@router.delete("/delta-signing", response_model=schemas.SigningInfo, response_model_exclude_unset=True)
def remove_signing(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Take the key away: the server builds no more delta bundles."""
    return svc.deltas.remove_signing_key(who)
