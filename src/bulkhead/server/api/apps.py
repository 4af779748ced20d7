"""Management API for changing and deleting app versions (/api/v1/apps/{name}/{version})."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ..errors import NotFound
from ..services.app_sboms import MAX_APP_SBOM_BYTES, MEDIA_TYPE, AppSbomService
from ..services.auth import Principal
from . import schemas, wire
from .deps import Services, principal, receive_upload, services
from .stored import stored_response

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["apps"])


class AppContainersIn(BaseModel):
    containers: list[dict[str, Any]] | None = Field(None, description="container specs; or give `compose`")
    compose: str | None = Field(None, description="a compose file's text instead of `containers`")


@router.put("/apps/{name}/{version}", response_model=schemas.AppOut, response_model_exclude_unset=True)
def update_app(
    name: str, version: str, body: AppContainersIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Replace the version's containers; devices running it recreate the containers that changed."""
    return svc.apps.update(who, name, version, body.containers, body.compose)


@router.delete("/apps/{name}/{version}", status_code=204)
def delete_app(name: str, version: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """Refused while a group or device wants the version or a rollout names it."""
    svc.apps.delete(who, name, version)
    return Response(status_code=204)


def _sboms(svc: Services) -> AppSbomService:
    if svc.app_sboms is None:
        raise NotFound("this server keeps no app SBOMs")
    return svc.app_sboms


@router.put(
    "/apps/{name}/{version}/sbom",
    response_model=schemas.SbomOut,
    response_model_exclude_unset=True,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "description": "CycloneDX 1.4-1.6 JSON"}}},
        }
    },
)
async def attach_app_sbom(
    name: str, version: str, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Attach a CycloneDX SBOM (the raw request body, at most 16 MiB) to an app version; a new one replaces it. Scans
    match its components' package URLs against OSV records for the devices that run the version."""
    who.require("operator")
    sboms = _sboms(svc)
    upload = await receive_upload(request, svc, MAX_APP_SBOM_BYTES)
    return await run_in_threadpool(sboms.attach, who, name, version, upload)


@router.get(
    "/apps/{name}/{version}/sbom",
    response_class=FileResponse,
    responses=wire.binary(MEDIA_TYPE, description="The app version's CycloneDX SBOM"),
)
def get_app_sbom(name: str, version: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """Download an app version's SBOM."""
    return stored_response(svc.store, _sboms(svc).sbom_file(who, name, version), MEDIA_TYPE)
