"""The web UI's read pages: overview, devices, releases, rollouts (and their htmx partials)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ..api.deps import Services, services
from ..api.paging import decode_cursor, encode_cursor
from ..api.stored import stored_response
from ..ids import DbId
from ..services import audit
from ..services.device_history import event_page
from ..services.device_list import DeviceFilter
from ..services.fleet_overview import overview
from ..services.keyset import Page
from ..services.ui_accounts import SignedIn
from . import views
from .plots import rollout_chart
from .routing import UiRoute
from .web import PREFIX, back, render, signed_in

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)
DEVICE_PAGE = 50
ROLLOUT_DEVICES = 100  # the devices a rollout's live view lists (its progress counts every device)
_DEVICES_SCOPE = "ui-devices"
AUDIT_PAGE = 100
ROLLOUT_PAGE = 100
_ROLLOUTS_SCOPE = "ui-rollouts"
_AUDIT_SCOPE = "ui-audit"


@router.get("/")
def overview_page(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    with svc.db.session() as s:
        fleet = overview(s, me.principal)
    return render(request, "overview.html", me=me, fleet=fleet)


@router.get("/devices")
def devices_page(
    request: Request,
    name: str = Query("", max_length=128),
    tag: str = Query("", max_length=64),
    group: str = Query("", max_length=64),
    status: str = Query("", max_length=16),
    version: str = Query("", max_length=128),
    compatible: str = Query("", max_length=128),
    cursor: str | None = Query(None, max_length=256),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    f = DeviceFilter(
        tags=(tag,) if tag else (),
        group=group or None,
        status=status or None,
        compatible=compatible or None,
        version=version or None,
        name_prefix=name or None,
    )
    after = decode_cursor(_DEVICES_SCOPE, cursor) if cursor else None
    page = svc.devices.list_devices(me.principal, f, Page(DEVICE_PAGE, after))
    values = {"name": name, "tag": tag, "group": group, "status": status, "version": version, "compatible": compatible}
    next_cursor = encode_cursor(_DEVICES_SCOPE, page.next) if page.next else None
    partial = request.headers.get("hx-request") and not request.headers.get("hx-boosted")
    template = "devices_rows.html" if partial else "devices.html"
    return render(request, template, me=me, devices=page.items, filters=values, next_cursor=next_cursor, cursor=cursor)


@router.get("/devices/{device_id}")
def device_page(
    device_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    dev = svc.devices.show(me.principal, str(device_id))
    with svc.db.session() as s:
        events = event_page(s, me.principal.require_tenant(), str(device_id), Page(50)).items
    releases = svc.releases.list_releases(me.principal, dev["compatible"], Page(100)).items
    booted, slot_rows = views.slots(dev["reported"])
    count, pkgs = views.packages(dev["reported"])
    return render(
        request,
        "device.html",
        me=me,
        dev=dev,
        booted=booted,
        slots=slot_rows,
        containers=views.containers(dev["reported"]),
        package_count=count,
        packages=pkgs,
        query="",
        events=events,
        releases=releases,
        agent_version=_agent_version(dev),
        remote_access=svc.remote_sessions is not None and svc.remote_sessions.access(me.principal)["enabled"],
    )


@router.get("/devices/{device_id}/identity")
def device_identity(
    device_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    """The device page's identity card (status, version, update, last seen), polled every 2 s."""
    dev = svc.devices.show(me.principal, str(device_id))
    return render(request, "device_identity.html", me=me, dev=dev, agent_version=_agent_version(dev))


@router.get("/devices/{device_id}/packages")
def device_packages(
    device_id: DbId,
    request: Request,
    q: str = Query("", max_length=128),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    dev = svc.devices.show(me.principal, str(device_id))
    count, pkgs = views.packages(dev["reported"], q)
    return render(request, "packages.html", me=me, package_count=count, packages=pkgs, query=q)


@router.get("/releases")
def releases_page(
    request: Request,
    compatible: str = Query("", max_length=128),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    items = svc.releases.list_releases(me.principal, compatible or None, Page(200)).items
    return render(request, "releases.html", me=me, releases=items, compatible=compatible)


@router.get("/releases/{release_id}")
def release_page(
    release_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    rel = svc.releases.get(me.principal, release_id)
    return render(request, "release.html", me=me, rel=rel)


@router.get("/releases/{release_id}/sbom")
def release_sbom(
    release_id: DbId,
    format: str | None = Query(None, max_length=32),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    sha256, media = svc.releases.sbom_file(me.principal, release_id, format)
    return stored_response(svc.store, sha256, media, filename=f"release-{release_id}-sbom.json")


@router.get("/rollouts")
def rollouts_page(
    request: Request,
    cursor: str | None = Query(None, max_length=256),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    after = decode_cursor(_ROLLOUTS_SCOPE, cursor) if cursor else None
    page = svc.rollouts.list_rollouts(me.principal, Page(ROLLOUT_PAGE, after))
    next_cursor = encode_cursor(_ROLLOUTS_SCOPE, page.next) if page.next else None
    return render(request, "rollouts.html", me=me, rollouts=page.items, next_cursor=next_cursor, cursor=cursor)


def _rollout_context(svc: Services, me: SignedIn, rollout_id: int) -> dict[str, Any]:
    r = svc.rollouts.show(me.principal, str(rollout_id))
    done = r["counts"].get("success", 0)
    actions = svc.rollouts.actions(me.principal, str(rollout_id), None, Page(ROLLOUT_DEVICES)).items
    percent = round(100 * done / r["devices"]) if r["devices"] else 0
    return {"r": r, "done": done, "percent": percent, "actions": actions, "action_limit": ROLLOUT_DEVICES}


@router.get("/rollouts/{rollout_id}")
def rollout_page(
    rollout_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    return render(request, "rollout.html", me=me, **_rollout_context(svc, me, rollout_id))


@router.get("/rollouts/{rollout_id}/progress")
def rollout_progress(
    rollout_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    return render(request, "rollout_progress.html", me=me, **_rollout_context(svc, me, rollout_id))


@router.get("/rollouts/{rollout_id}/timeline")
def rollout_timeline(
    rollout_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    """The rollout's devices succeeded, failed and canceled over time (an htmx partial, refreshed every 10 s)."""
    chart = rollout_chart(svc.rollouts.timeline(me.principal, str(rollout_id)))
    return render(request, "rollout_timeline.html", me=me, chart=chart)


@router.get("/audit")
def audit_page(
    request: Request,
    action: str = Query("", max_length=64),
    cursor: str | None = Query(None, max_length=256),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    """The tenant's audit log, newest first (operators and admins, as the API's)."""
    after = decode_cursor(_AUDIT_SCOPE, cursor) if cursor else None
    with svc.db.session() as s:
        page = audit.recent(s, me.principal, action or None, Page(AUDIT_PAGE, after))
    next_cursor = encode_cursor(_AUDIT_SCOPE, page.next) if page.next else None
    return render(request, "audit.html", me=me, events=page.items, action=action, next_cursor=next_cursor, cursor=cursor)


def _agent_version(dev: dict[str, Any]) -> str:
    reported = dev["reported"]
    return str(reported.get("agent_version") or "") if isinstance(reported, dict) else ""


def root_redirect() -> Response:
    """`/` for a browser: the overview (which sends a visitor without a session to the login)."""
    return back(PREFIX + "/")
