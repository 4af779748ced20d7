"""The web UI's apps and groups pages: app versions, groups with their members, desired apps and maintenance windows.

Reads and writes go through AppService, GroupService and RolloutService (their role checks and audit records), as
the management API's; every write checks the session's CSRF token first.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ..api.deps import Services, services
from ..api.paging import decode_cursor, encode_cursor
from ..errors import Invalid
from ..services.groups import GroupService
from ..services.keyset import Page
from ..services.ui_accounts import SignedIn
from .routing import UiRoute
from .web import PREFIX, back, form, render, require_write, signed_in

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)
APP_PAGE = 100
GROUP_PAGE = 100
_APPS_SCOPE = "ui-apps"
_GROUPS_SCOPE = "ui-groups"


def _groups(svc: Services) -> GroupService:
    return svc.group_service()


@router.get("/apps")
def apps_page(
    request: Request,
    name: str = Query("", max_length=128),
    cursor: str | None = Query(None, max_length=256),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    """Every app version by name (its containers, the groups that want it), a page at a time."""
    after = decode_cursor(_APPS_SCOPE, cursor) if cursor else None
    page = svc.apps.list_apps(me.principal, name or None, Page(APP_PAGE, after))
    next_cursor = encode_cursor(_APPS_SCOPE, page.next) if page.next else None
    desired: dict[tuple[str, str], list[str]] = {}  # (app, version) -> the groups that want it
    for g in _groups(svc).list_groups(me.principal, Page(GROUP_PAGE)).items:
        for app, version in (g["apps"] or {}).items():
            if version:
                desired.setdefault((app, version), []).append(g["name"])
    return render(
        request, "apps.html", me=me, apps=page.items, desired=desired, name=name, next_cursor=next_cursor, cursor=cursor
    )


@router.get("/groups")
def groups_page(
    request: Request,
    cursor: str | None = Query(None, max_length=256),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    after = decode_cursor(_GROUPS_SCOPE, cursor) if cursor else None
    page = _groups(svc).list_groups(me.principal, Page(GROUP_PAGE, after))
    next_cursor = encode_cursor(_GROUPS_SCOPE, page.next) if page.next else None
    return render(request, "groups.html", me=me, groups=page.items, next_cursor=next_cursor, cursor=cursor)


@router.get("/groups/{name}")
def group_page(name: str, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    g = _groups(svc).show(me.principal, name)
    apps = svc.apps.list_apps(me.principal, None, Page(APP_PAGE)).items
    versions: dict[str, list[str]] = {}
    for a in apps:
        versions.setdefault(a["name"], []).append(a["version"])
    return render(request, "group.html", me=me, g=g, app_versions=versions)


def _group_url(name: str) -> str:
    return f"{PREFIX}/groups/{quote(name, safe='')}"


@router.post("/groups")
async def group_create(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    name = fields.get("name", "").strip()
    _groups(svc).create(me.principal, name)
    return back(_group_url(name))


@router.post("/groups/{name}/{action}")
async def group_action(
    name: str, action: str, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    who, groups = me.principal, _groups(svc)
    if action == "delete":
        groups.delete(who, name)
        return back(f"{PREFIX}/groups")
    if action in ("add-device", "remove-device"):
        device = fields.get("device", "").strip()
        if not device:
            raise Invalid("name the device to add or remove")
        (groups.add_device if action == "add-device" else groups.remove_device)(who, name, device)
    elif action == "app":
        app, version = fields.get("app", "").strip(), fields.get("version", "").strip()
        if not app:
            raise Invalid("choose an app")
        svc.apps.set_desired(who, "group", name, apps={app: version or None})
    elif action == "window":
        svc.rollouts.set_group_window(who, name, _window(fields))
    else:
        raise Invalid(f"unknown group action '{action}'")
    return back(_group_url(name))


def _window(fields: dict[str, str]) -> dict[str, Any] | None:
    """The window form as the API's {cron, duration_minutes, timezone}; an empty cron removes the window."""
    cron = fields.get("cron", "").strip()
    if not cron:
        return None
    minutes = fields.get("duration_minutes", "").strip()
    if not minutes.isdigit():
        raise Invalid("give the window's duration in whole minutes")
    return {"cron": cron, "duration_minutes": int(minutes), "timezone": fields.get("timezone", "").strip() or "UTC"}
