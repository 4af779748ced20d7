"""The web UI's write actions on devices and rollouts: each checks the CSRF token, then calls the same service (and
role check, and audit record) as the management API, as the signed-in user."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..api.deps import Services, services
from ..errors import Invalid
from ..ids import DbId
from ..services.ui_accounts import SignedIn
from .pages import _rollout_context
from .routing import UiRoute
from .web import PREFIX, back, form, render, require_write, signed_in

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)
DEVICE_ACTIONS = ("approve", "disable", "enable", "factory-reset", "factory-reset-cancel")
ROLLOUT_ACTIONS = ("pause", "resume", "cancel", "approve", "retry")


@router.post("/devices/{device_id}/{action}")
async def device_action(
    device_id: DbId, action: str, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    ref, who = str(device_id), me.principal
    if action == "approve":
        svc.devices.approve(who, ref)
    elif action == "disable":
        svc.devices.disable(who, ref)
    elif action == "enable":
        svc.devices.enable(who, ref)
    elif action == "factory-reset":
        if fields.get("confirm") != "on":
            raise Invalid("tick the box that says the device's data is erased, then ask again")
        svc.devices.factory_reset(who, ref)
    elif action == "factory-reset-cancel":
        svc.devices.factory_reset(who, ref, cancel=True)
    elif action == "tags":
        add = [t for t in fields.get("add", "").replace(",", " ").split() if t]
        remove = [t for t in fields.get("remove", "").replace(",", " ").split() if t]
        svc.devices.tag(who, ref, add, remove)
    elif action == "release":
        raw = fields.get("release_id", "")
        if raw and not raw.isdigit():
            raise Invalid("choose a release from the list")
        svc.devices.set_desired_release(who, ref, int(raw) if raw else None, fields.get("allow_downgrade") == "on")
    else:
        raise Invalid(f"unknown device action '{action}'")
    return back(f"{PREFIX}/devices/{device_id}")


@router.post("/rollouts/{rollout_id}/{action}")
async def rollout_action(
    rollout_id: DbId, action: str, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    if action not in ROLLOUT_ACTIONS:
        raise Invalid(f"unknown rollout action '{action}': use {', '.join(ROLLOUT_ACTIONS)}")
    getattr(svc.rollouts, action)(me.principal, str(rollout_id))
    if request.headers.get("hx-request"):  # the progress partial, swapped in place: no reload
        return render(request, "rollout_progress.html", me=me, **_rollout_context(svc, me, rollout_id))
    return back(f"{PREFIX}/rollouts/{rollout_id}")
