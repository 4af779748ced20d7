"""hawkBit DDI API (/{tenant}/controller/v1/{controllerId}) for existing RAUC and SWUpdate clients.

Artifact downloads under `.../softwaremodules/{id}/artifacts/{file}` are served by the lean delivery app
(full Range support, no database write per request); everything else is here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ..errors import Invalid
from ..ids import DbId
from ..pollcache import ACTION_TTL, IDLE_TTL, Answer
from ..services.auth import Principal
from ..services.ddi import DdiCaller
from . import ddi_schemas, schemas, wire
from .deps import Services, answer_response, principal, services
from .fields import Attributes, Compatible, Name, Names

router = APIRouter(prefix="/{tenant}/controller/v1/{controller_id}", tags=["hawkBit DDI"])
manage = APIRouter(prefix="/api/v1", tags=["hawkBit DDI"])


def caller(tenant: str, controller_id: str, request: Request) -> DdiCaller:
    svc: Services = request.app.state.services
    who = svc.ddi_auth.resolve(tenant, controller_id, request.headers)
    if svc.activity is not None:
        svc.activity.seen(who.device_id)
    return who


def _base(request: Request, svc: Services, tenant: str, controller_id: str) -> str:
    root = svc.settings.public_url or str(request.base_url).rstrip("/")
    return f"{root.rstrip('/')}/{tenant}/controller/v1/{controller_id}"


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise Invalid("the request body is not valid JSON") from None


def root_answer(svc: Services, who: DdiCaller, base: str) -> Answer:
    """The root resource: polling interval and links to what the controller should do next, with its ETag."""
    body = svc.ddi.root(who, base)
    raw = json.dumps(body, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
    links = body.get("_links") or {}
    # An open action may depend on the clock (maintenance windows): reuse such answers only briefly.
    ttl = ACTION_TTL if ("deploymentBase" in links or "cancelAction" in links) else IDLE_TTL
    return Answer(raw, etag, "application/hal+json", ttl)


@router.get(
    "",
    response_model=ddi_schemas.DdiRoot,
    response_class=ddi_schemas.HalJsonResponse,
    response_model_exclude_unset=True,
    responses={304: {"description": "Not modified: the ETag in If-None-Match still holds"}},
)
def root(
    tenant: str, controller_id: str, request: Request, who: DdiCaller = Depends(caller), svc: Services = Depends(services)
) -> Response:
    """Polling interval and links to what the controller should do next; ETag/304.

    Served by the lean poll app (api/polls.py) from memory; this route documents it and serves it without the cache.
    """
    return answer_response(root_answer(svc, who, _base(request, svc, tenant, controller_id)), request)


@router.get("/deploymentBase/{action_id}", response_model=ddi_schemas.DdiDeploymentBase, response_model_exclude_unset=True)
def deployment_base(
    tenant: str,
    controller_id: str,
    action_id: DbId,
    request: Request,
    history: int = Query(0, alias="actionHistory", ge=-1, le=10000, description="Include this many status messages (-1: all)"),
    who: DdiCaller = Depends(caller),
    svc: Services = Depends(services),
) -> Any:
    """The action's deployment; `?c=` is only a cache buster (it changes when the action does)."""
    return svc.ddi.deployment(who, action_id, _base(request, svc, tenant, controller_id), history=history)


@router.post(
    "/deploymentBase/{action_id}/feedback",
    response_class=Response,
    response_description="Recorded (empty body)",
    openapi_extra=wire.json_body(ddi_schemas.DdiFeedbackIn),
)
async def deployment_feedback(
    action_id: DbId, request: Request, who: DdiCaller = Depends(caller), svc: Services = Depends(services)
) -> Response:
    body = await _json(request)
    await run_in_threadpool(svc.ddi.feedback, who, action_id, body)
    return Response(status_code=200)


@router.get("/cancelAction/{action_id}", response_model=ddi_schemas.DdiCancel, response_model_exclude_unset=True)
def cancel_action(action_id: DbId, who: DdiCaller = Depends(caller), svc: Services = Depends(services)) -> Any:
    return svc.ddi.cancel_info(who, action_id)


@router.post(
    "/cancelAction/{action_id}/feedback",
    response_class=Response,
    response_description="Recorded (empty body)",
    openapi_extra=wire.json_body(ddi_schemas.DdiFeedbackIn),
)
async def cancel_feedback(
    action_id: DbId, request: Request, who: DdiCaller = Depends(caller), svc: Services = Depends(services)
) -> Response:
    body = await _json(request)
    await run_in_threadpool(svc.ddi.feedback, who, action_id, body, True)
    return Response(status_code=200)


@router.put(
    "/configData",
    response_class=Response,
    response_description="Recorded (empty body)",
    openapi_extra=wire.json_body(ddi_schemas.DdiConfigDataIn),
)
async def config_data(request: Request, who: DdiCaller = Depends(caller), svc: Services = Depends(services)) -> Response:
    body = await _json(request)
    await run_in_threadpool(svc.ddi.config_data, who, body)
    return Response(status_code=200)


@router.get("/installedBase/{action_id}", response_model=ddi_schemas.DdiDeploymentBase, response_model_exclude_unset=True)
def installed_base(
    tenant: str,
    controller_id: str,
    action_id: DbId,
    request: Request,
    who: DdiCaller = Depends(caller),
    svc: Services = Depends(services),
) -> Any:
    return svc.ddi.deployment(who, action_id, _base(request, svc, tenant, controller_id), installed=True)


@router.put(
    "/installedBase",
    response_model=ddi_schemas.DdiInstalledBaseOut,
    response_model_exclude_unset=True,
    openapi_extra=wire.json_body(ddi_schemas.DdiInstalledBaseIn),
)
async def put_installed_base(request: Request, who: DdiCaller = Depends(caller), svc: Services = Depends(services)) -> Any:
    body = await _json(request)
    return await run_in_threadpool(svc.ddi.installed_base, who, body)


class DdiSettingsIn(BaseModel):
    auto_register: bool | None = Field(None, description="Create devices on their first poll with the gateway token")
    default_compatible: Compatible | None = Field(None, description="compatible given to auto-registered devices")
    rotate_gateway_token: bool = Field(False, description="Issue a new GatewayToken (shown once); the old one stops working")


class ProvisionIn(BaseModel):
    name: Name
    compatible: Compatible
    groups: Names = Field(default_factory=list)
    attributes: Attributes = Field(default_factory=dict)


@manage.put("/ddi", response_model=ddi_schemas.DdiSettingsOut, response_model_exclude_unset=True)
def configure(body: DdiSettingsIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """The tenant's DDI settings: gateway token, auto-registration, default compatible."""
    return svc.ddi.configure(who, body.auto_register, body.default_compatible, body.rotate_gateway_token)


@manage.post(
    "/devices", status_code=201, tags=["devices"], response_model=schemas.DeviceProvisioned, response_model_exclude_unset=True
)
def provision(body: ProvisionIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Create a device ahead of time; its credential is also its DDI TargetToken (shown once)."""
    return svc.ddi.provision(who, body.name, body.compatible, body.groups, body.attributes)
