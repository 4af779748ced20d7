"""Management API for device groups (/api/v1/groups): list, show, create, delete, and device membership."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from ..services.auth import Principal
from ..services.groups import GroupService
from .deps import Services, principal, services
from .paging import PAGED, Pager, pager

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["groups"])


class GroupIn(BaseModel):
    name: str = Field(description="1-128 letters, digits, '.', '_', ':' or '-'")


class GroupOut(BaseModel):
    """A device group: its devices, desired state and maintenance window."""

    name: str
    devices: int = Field(description="how many devices are in the group")
    release_id: int | None = Field(None, description="the group's desired OS release")
    apps: dict[str, str | None] = Field(default_factory=dict, description="the group's desired apps: name -> version")
    files: list[str] = Field(default_factory=list, description="paths of the group's desired files")
    window: dict[str, Any] | None = Field(None, description="maintenance window {cron, duration_minutes, timezone}")


class GroupDetail(GroupOut):
    """A device group with its members and what refers to it."""

    device_names: list[str] = Field(default_factory=list)
    referenced_by: list[str] = Field(default_factory=list, description="rollouts and bootstrap tokens naming the group")


class MembershipOut(BaseModel):
    """A device and the groups it is in now."""

    device: str
    groups: list[str]


def _groups(svc: Services) -> GroupService:
    return svc.group_service()


@router.get("/groups", response_model=list[GroupOut], responses=PAGED)
def list_groups(
    pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """The groups by name, a page at a time: created ones and those devices were provisioned into, with device counts."""
    return pg.send(_groups(svc).list_groups(who, pg.page))


@router.post("/groups", status_code=201, response_model=GroupDetail)
def create_group(body: GroupIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return _groups(svc).create(who, body.name)


@router.get("/groups/{name}", response_model=GroupDetail)
def show_group(name: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return _groups(svc).show(who, name)


@router.delete("/groups/{name}", status_code=204)
def delete_group(name: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """Refused while devices are in it, or rollouts or bootstrap tokens name it."""
    _groups(svc).delete(who, name)
    return Response(status_code=204)


@router.put("/groups/{name}/devices/{device}", response_model=MembershipOut)
def add_device(name: str, device: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Put a device into the group (running rollouts that target the group take it in)."""
    return _groups(svc).add_device(who, name, device)


@router.delete("/groups/{name}/devices/{device}", response_model=MembershipOut)
def remove_device(
    name: str, device: str, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    return _groups(svc).remove_device(who, name, device)
