"""The web UI's device health plots and its terminal on a device (remote sessions, docs/adr/0011)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..api.deps import Services, services
from ..ids import DbId
from ..services.alerts import AlertService
from ..services.device_metrics import MetricsService
from ..services.remote_sessions import RemoteSessionService
from ..services.ui_accounts import SignedIn
from .plots import health_chart
from .routing import UiRoute
from .web import PREFIX, form, render, require_write, signed_in

__all__ = ["TERMINAL_CSP", "router"]

router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)
HEALTH_HOURS = 24
# xterm.js writes its own <style> elements: the terminal's page allows inline styles (scripts stay this server's).
TERMINAL_CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@router.get("/devices/{device_id}/health")
def device_health(
    device_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    """The device page's health card: CPU, memory and disk over the last day (an htmx partial)."""
    metrics = svc.metrics or MetricsService(svc.db, AlertService(svc.db))
    end = dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(hours=HEALTH_HOURS)
    samples = metrics.series(me.principal, str(device_id), start, None)
    latest = samples[-1] if samples else None
    return render(request, "device_health.html", me=me, chart=health_chart(samples, start, end), latest=latest)


@router.post("/devices/{device_id}/terminal")
async def device_terminal(
    device_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    """Open a shell session on the device (operators; the tenant's remote access on) and the terminal page for it."""
    fields = await form(request)
    require_write(request, me, fields)
    sessions = svc.remote_sessions or RemoteSessionService(svc.db)
    session = sessions.open(me.principal, str(device_id), "shell", None)
    page = render(request, "terminal.html", me=me, session=session)
    page.headers["content-security-policy"] = TERMINAL_CSP
    return page
