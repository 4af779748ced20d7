"""Management API for rollouts (/api/v1/rollouts) and the maintenance windows of device groups."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from ..errors import NotFound
from ..services import audit
from ..services.auth import Principal
from . import schemas
from .deps import Services, principal, services
from .fields import BodyId, Name, PathName
from .management import PackageIn
from .paging import PAGED, Pager, pager

router = APIRouter(prefix="/api/v1", tags=["rollouts"])


class AppRef(BaseModel):
    name: Name
    version: Name


class RolloutIn(BaseModel):
    name: Name
    release_id: BodyId | None = Field(None, description="the OS release to install; or give `app` or `packages`")
    app: AppRef | None = Field(None, description="the app version to run ({name, version}); or give `release_id` or `packages`")
    packages: dict[Name, PackageIn] | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Debian packages to install (exact version), hold or remove with apt from the overlay; or give "
        "`release_id` or `app`",
    )
    type: Name = Field("soft", description="soft, forced or download_only")
    target: dict[str, Any] = Field(
        default_factory=dict, max_length=16, description="tags (all), groups (any), compatible, attributes"
    )
    phases: list[dict[str, Any]] | None = Field(
        None, max_length=100, description="[{group|percent, success_threshold, error_threshold, name}]; none = one phase of all"
    )
    window: dict[str, Any] | None = Field(
        None, max_length=8, description="{cron, duration_minutes, timezone}: install only within it"
    )
    start_at: str | None = Field(
        None,
        max_length=64,
        description="ISO 8601 time with offset (years 2000-2100); default now",
        json_schema_extra={"format": "date-time"},
    )
    requires_approval: bool = False
    allow_empty: bool = Field(
        False, description="accept a target that matches no device yet (or a tag no device has): devices join later"
    )
    allow_downgrade: bool = Field(False, description="accept a version older than what targeted devices run")


class WindowIn(BaseModel):
    window: dict[str, Any] | None = Field(max_length=8)


@router.post("/rollouts", status_code=201, response_model=schemas.RolloutOut, response_model_exclude_unset=True)
def create(body: RolloutIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Create a rollout; it starts now, at `start_at`, or after an admin approves it."""
    return svc.rollouts.create(who, body.model_dump())


@router.get("/rollouts", response_model=list[schemas.RolloutOut], response_model_exclude_unset=True, responses=PAGED)
def list_rollouts(
    pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """The tenant's rollouts by id, a page at a time."""
    return pg.send(svc.rollouts.list_rollouts(who, pg.page))


@router.get("/rollouts/{ref}", response_model=schemas.RolloutOut, response_model_exclude_unset=True)
def show(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """The rollout with its progress per phase (counts per status, bytes transferred)."""
    return svc.rollouts.show(who, ref)


@router.get("/rollouts/{ref}/timeline", response_model=schemas.RolloutTimelineOut)
def rollout_timeline(ref: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Devices succeeded, failed and canceled over time, for a plot of the rollout's progress."""
    t = svc.rollouts.timeline(who, ref)
    return {"start": t.start.isoformat(), "step_seconds": t.step, "points": t.points()}


@router.get("/rollouts/{ref}/actions", response_model=list[schemas.ActionOut], response_model_exclude_unset=True, responses=PAGED)
def actions(
    ref: str,
    status: str | None = Query(None, max_length=24, description="only actions in this status"),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> Response:
    """Each device's action (status, history, bytes transferred) by id, a page at a time."""
    return pg.send_json(svc.rollouts.actions_json(who, ref, status, pg.page))  # JSON text: the model describes it


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
    name: PathName, body: WindowIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The group's maintenance window (null removes it): outside it, devices download but do not install."""
    return svc.rollouts.set_group_window(who, name, body.window)


@router.get("/audit", tags=["audit"], response_model=list[schemas.AuditEntry], response_model_exclude_unset=True, responses=PAGED)
def audit_log(
    action: str | None = Query(None, max_length=256),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """Who did what, newest first, a page at a time; `action=rollout.` filters by prefix."""
    with svc.db.session() as s:
        return pg.send(audit.recent(s, who, action, pg.page))
