"""Management API for changing and deleting app versions (/api/v1/apps/{name}/{version})."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from ..services.auth import Principal
from . import schemas
from .deps import Services, principal, services

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
