"""Management API for rollouts (/api/v1/rollouts) and the maintenance windows of device groups."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from ..errors import NotFound
from ..services import audit
from ..services.auth import Principal
from . import schemas
from .deps import Services, principal, services

router = APIRouter(prefix="/api/v1", tags=["rollouts"])


class AppRef(BaseModel):
    name: str
    version: str


class RolloutIn(BaseModel):
    name: str
    release_id: int | None = Field(None, description="the OS release to install; or give `app`")
    app: AppRef | None = Field(None, description="the app version to run ({name, version}); or give `release_id`")
    type: str = Field("soft", description="soft, forced or download_only")
    target: dict[str, Any] = Field(default_factory=dict, description="tags (all), groups (any), compatible, attributes")
    phases: list[dict[str, Any]] | None = Field(
        None, description="[{group|percent, success_threshold, error_threshold, name}]; none = one phase of all"
    )
    window: dict[str, Any] | None = Field(None, description="{cron, duration_minutes, timezone}: install only within it")
    start_at: str | None = Field(None, description="ISO 8601 time with offset; default now")
    requires_approval: bool = False


class WindowIn(BaseModel):
    window: dict[str, Any] | None


@router.post("/rollouts", status_code=201, response_model=schemas.RolloutOut, response_model_exclude_unset=True)
def create(body: RolloutIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Create a rollout; it starts now, at `start_at`, or after an admin approves it."""
    return svc.rollouts.create(who, body.model_dump())


@router.get("/rollouts", response_model=list[schemas.RolloutOut], response_model_exclude_unset=True)
def list_rollouts(who: Principal = Depends(principal), svc: Services = Depends(services)) -> list[dict[str, Any]]:
    return svc.rollouts.list_rollouts(who)


@router.get("/rollouts/{ref}", response_model=schemas.RolloutOut, response_model_exclude_unset=True)
def show(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """The rollout with its progress per phase (counts per status, bytes transferred)."""
    return svc.rollouts.show(who, ref)


@router.get("/rollouts/{ref}/actions", response_model=list[schemas.ActionOut], response_model_exclude_unset=True)
def actions(
    ref: str, status: str | None = None, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """Each device's action: status, history, bytes transferred."""
    return svc.rollouts.actions(who, ref, status)


@router.post("/rollouts/{ref}/{verb}", response_model=schemas.RolloutOut, response_model_exclude_unset=True)
def command(ref: str, verb: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """approve, pause, resume, cancel or retry (failed devices get a new attempt)."""
    verbs = {
        "approve": svc.rollouts.approve,
        "pause": svc.rollouts.pause,
        "resume": svc.rollouts.resume,
        "cancel": svc.rollouts.cancel,
        "retry": svc.rollouts.retry,
    }
    if verb not in verbs:
        raise NotFound(f"unknown rollout command '{verb}'; use {', '.join(verbs)}")
    return verbs[verb](who, ref)


@router.delete("/rollouts/{ref}", status_code=204)
def delete(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    svc.rollouts.delete(who, ref)
    return Response(status_code=204)


@router.put("/groups/{name}/window", tags=["devices"], response_model=schemas.GroupWindowOut, response_model_exclude_unset=True)
def set_group_window(
    name: str, body: WindowIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The group's maintenance window (null removes it): outside it, devices download but do not install."""
    return svc.rollouts.set_group_window(who, name, body.window)


@router.get("/audit", tags=["audit"], response_model=list[schemas.AuditEntry], response_model_exclude_unset=True)
def audit_log(
    action: str | None = None, limit: int = 200, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """Who did what, newest first; `action=rollout.` filters by prefix."""
    with svc.db.session() as s:
        return audit.recent(s, who, action, limit)
