"""The web UI's release upload (with progress, static/upload.js) and rollout creation (with a live preview of the
phases' sizes). Both call the same services, role checks and audit records as the management API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Services, receive_upload, services
from ..errors import Invalid
from ..services.keyset import Page
from ..services.rollout_plan import ACTION_TYPES, parse_phases, parse_target
from ..services.rollout_preview import preview_sizes
from ..services.ui_accounts import SignedIn
from .routing import UiRoute
from .web import PREFIX, back, form, render, require_write, signed_in

__all__ = ["rollout_body", "router"]

router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)
RELEASE_CHOICES = 200


@router.post("/releases/upload")
async def upload_release(
    request: Request,
    compatible: str = Query("", max_length=128),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    """The bundle as the raw body (sent by static/upload.js with the CSRF token in X-CSRF-Token); answers a fragment."""
    require_write(request, me, {})
    me.principal.require("operator")  # before reading a large body a viewer may not store
    upload = await receive_upload(request, svc, svc.settings.max_upload_bytes)
    rel = await run_in_threadpool(svc.releases.ingest, me.principal, upload, compatible or None)
    resp = render(request, "release_uploaded.html", 201, me=me, rel=rel)
    resp.headers["x-bulkhead-release"] = f"{PREFIX}/releases/{rel['id']}"
    return resp


def _names(raw: str) -> list[str]:
    return [n for n in raw.replace(",", " ").split() if n]


def _percent(raw: str, what: str) -> int | None:
    raw = raw.strip().rstrip("%").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise Invalid(f"{what} must be a whole percentage such as 20, not '{raw[:20]}'")
    return int(raw)


def _packages(raw: str) -> dict[str, dict[str, Any]] | None:
    """One package per line: `NAME=VERSION`, `NAME=VERSION hold` or `NAME remove` (checked again by the service)."""
    packages: dict[str, dict[str, Any]] = {}
    for line in raw.splitlines()[:257]:
        words = line.split()
        if not words:
            continue
        name, eq, version = words[0].partition("=")
        flags = words[1:]
        if flags == ["remove"] and not eq:
            packages[name] = {"remove": True}
        elif eq and version and flags in ([], ["hold"]):
            packages[name] = {"version": version, "hold": flags == ["hold"]}
        else:
            raise Invalid(f"write each package as NAME=VERSION, NAME=VERSION hold or NAME remove, not '{line.strip()[:80]}'")
    return packages or None


def _phases(raw: str, success: int | None, error: int | None) -> list[dict[str, Any]]:
    """`10, 90` (each phase's share of the target) or `group:canary, 100` (a group's phase, then the rest)."""
    out: list[dict[str, Any]] = []
    for i, token in enumerate(t.strip() for t in raw.split(",") if t.strip()):
        phase: dict[str, Any] = {}
        if token.startswith("group:"):
            phase["group"] = token[len("group:") :].strip()
        else:
            phase["percent"] = _percent(token, f"phase {i + 1}")
        if success is not None:
            phase["success_threshold"] = success
        if error is not None:
            phase["error_threshold"] = error
        out.append(phase)
    return out


def rollout_body(fields: dict[str, str]) -> dict[str, Any]:
    """The management API's rollout body from the creation form's fields (validated by the service's parsers)."""
    release = fields.get("release_id", "").strip()
    if release and not release.isdigit():
        raise Invalid("choose a release from the list")
    target = {
        "tags": _names(fields.get("tags", "")),
        "groups": _names(fields.get("groups", "")),
        "compatible": fields.get("compatible", "").strip() or None,
    }
    success = _percent(fields.get("success_threshold", ""), "the success threshold")
    error = _percent(fields.get("error_threshold", ""), "the error threshold")
    body: dict[str, Any] = {
        "name": fields.get("name", "").strip(),
        "release_id": int(release) if release else None,
        "target": target,
        **({"packages": packages} if (packages := _packages(fields.get("packages", ""))) else {}),
        "phases": _phases(fields.get("phases", ""), success, error),
        "type": fields.get("type") or "soft",
        "requires_approval": fields.get("requires_approval") == "on",
        "allow_downgrade": fields.get("allow_downgrade") == "on",
    }
    cron = fields.get("window_cron", "").strip()
    if cron:
        minutes = fields.get("window_minutes", "").strip()
        if not minutes.isdigit():
            raise Invalid("a window needs its length in minutes (e.g. 120)")
        tz = fields.get("window_tz", "").strip() or "UTC"
        body["window"] = {"cron": cron, "duration_minutes": int(minutes), "timezone": tz}
    return body


@router.get("/rollouts/new")
def new_rollout_page(
    request: Request, release: int | None = Query(None), me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    me.principal.require("operator")
    releases = svc.releases.list_releases(me.principal, None, Page(RELEASE_CHOICES)).items
    return render(request, "rollout_new.html", me=me, releases=releases, chosen=release, types=ACTION_TYPES)


@router.get("/rollouts/preview")
def rollout_preview(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    """The creation form's live preview: devices the target matches and how many each phase gets, counted by SQL."""
    body = rollout_body(dict(request.query_params))
    target, phases = parse_target(body["target"]), parse_phases(body["phases"])
    with svc.db.session() as s:
        total, sizes = preview_sizes(s, me.principal.require_tenant(), target, phases)
    empty = [i + 1 for i, n in enumerate(sizes) if n == 0 and any(sizes[i + 1 :])]
    rows = [(p["name"], n) for p, n in zip(phases, sizes, strict=True)]
    return render(request, "rollout_preview.html", me=me, total=total, rows=rows, empty=empty)


@router.post("/rollouts/new")
async def create_rollout(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    out = await run_in_threadpool(svc.rollouts.create, me.principal, rollout_body(fields))
    target = f"{PREFIX}/rollouts/{out['id']}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"hx-redirect": target})
    return back(target)
