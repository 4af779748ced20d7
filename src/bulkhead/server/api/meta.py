"""The server's own endpoints: readiness for load balancers, Prometheus metrics for monitoring."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from .. import readiness
from ..asgi import error_body
from ..metrics import CONTENT_TYPE, FleetCollector, render
from ..services.auth import Principal
from .deps import Services, principal, services
from .wire import Out

__all__ = ["router"]

router = APIRouter(tags=["meta"])


class Ready(Out):
    """The server can serve: its database and job queue answer and its artifact store takes writes."""

    status: Literal["ready"]
    checks: dict[str, str]


def _queue(svc: Services) -> tuple[int, int]:
    return svc.queue_depth() if svc.queue_depth is not None else (0, 0)


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"description": "Not ready: `checks` says which dependency failed"}},
)
def ready(svc: Services = Depends(services)) -> Any:
    """Whether this server process can serve (unauthenticated, for load balancers; no paths or credentials shown)."""
    checks = readiness.check(svc.db, svc.store, lambda: _queue(svc))
    failed = {k: v for k, v in checks.items() if v != "ok"}
    if failed:
        message = "not ready: " + "; ".join(f"{k} {v}" for k, v in failed.items())
        return JSONResponse({**error_body("not_ready", message), "checks": checks}, status_code=503)
    return {"status": "ready", "checks": checks}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE: {"schema": {"type": "string", "description": "Prometheus text exposition format 0.0.4"}}},
            "description": "Prometheus text format",
        }
    },
)
def metrics(who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """Prometheus metrics (any user token, as a bearer token; a tenant's token sees its tenant's fleet)."""
    who.require("viewer")
    fleet = FleetCollector(svc.db, who.tenant_id, (lambda: _queue(svc)) if who.tenant_id is None else None)
    return Response(render(fleet), media_type=CONTENT_TYPE)
