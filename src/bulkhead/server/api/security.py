"""Management API of security updates by policy: /api/v1/releases/{id}/security (mark), /api/v1/security/policies,
/api/v1/security/postponements, /api/v1/devices/{ref}/security and /api/v1/security/run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from ..ids import DbId
from ..services.auth import Principal
from ..services.security import SecurityService
from . import security_schemas as ss
from .deps import Services, principal, services
from .fields import PathName

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["security updates"])


def _svc(svc: Services) -> SecurityService:
    assert svc.security is not None, "the server was built without security updates"
    return svc.security


@router.put("/releases/{release_id}/security", response_model=ss.MarkOut)
def mark(release_id: DbId, body: ss.MarkIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    """Mark a release a security update (operators; audited): devices get it by their policy, automatically within
    their window of `available_at` unless postponed or opted out."""
    return _svc(svc).mark(who, release_id, body.available_at, body.reason)


@router.delete("/releases/{release_id}/security", status_code=204)
def unmark(release_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """The release is no security update (operators; audited): its policy rollout is canceled, postponements go."""
    _svc(svc).unmark(who, release_id, svc.rollouts)
    return Response(status_code=204)


@router.get("/security/releases", response_model=list[ss.MarkOut])
def releases(who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    """The releases marked security updates, each with the rollout the policy installs it with."""
    return _svc(svc).list_releases(who)


@router.get("/security/policies", response_model=ss.PolicyListOut)
def policies(who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    """The tenant's default policy, the postponement limit, and the policies of groups and devices."""
    return _svc(svc).list_policies(who)


@router.put("/security/policies/default", response_model=ss.PolicyOut)
def set_default(body: ss.PolicyIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    """The tenant's default policy (without one: automatic, the server's window). Audited."""
    return _svc(svc).set_policy(who, "tenant", None, body.mode, body.window_days)


@router.put("/security/policies/groups/{name}", response_model=ss.PolicyOut)
def set_group(name: PathName, body: ss.PolicyIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    """A group's policy (the last of a device's groups with one wins over the others). Audited."""
    return _svc(svc).set_policy(who, "group", name, body.mode, body.window_days)


@router.put("/security/policies/devices/{ref}", response_model=ss.PolicyOut)
def set_device(ref: PathName, body: ss.PolicyIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    """A device's own policy (wins over its groups'). Audited."""
    return _svc(svc).set_policy(who, "device", ref, body.mode, body.window_days)


@router.delete("/security/policies/default", status_code=204)
def clear_default(who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    _svc(svc).clear_policy(who, "tenant", None)
    return Response(status_code=204)


@router.delete("/security/policies/groups/{name}", status_code=204)
def clear_group(name: PathName, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    _svc(svc).clear_policy(who, "group", name)
    return Response(status_code=204)


@router.delete("/security/policies/devices/{ref}", status_code=204)
def clear_device(ref: PathName, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    _svc(svc).clear_policy(who, "device", ref)
    return Response(status_code=204)


@router.post("/security/postponements", status_code=201, response_model=ss.PostponementOut)
def postpone(body: ss.PostponeIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    """Postpone a security release for a device or a group (operators; audited with who and why), at most the
    server's limit past its due date in total: beyond it the answer is 409 naming the limit."""
    return _svc(svc).postpone(who, body.release_id, body.device, body.group, body.days, body.until, body.reason)


@router.get("/security/postponements", response_model=list[ss.PostponementOut])
def postponements(
    release: int | None = Query(None, ge=1, le=2**31 - 1, description="only this release's"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> Any:
    return _svc(svc).list_postponements(who, release)


@router.delete("/security/postponements/{pid}", status_code=204)
def end_postponement(pid: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """End a postponement now (audited); its devices get the update once it is due."""
    _svc(svc).end_postponement(who, pid)
    return Response(status_code=204)


@router.get("/devices/{ref}/security", response_model=ss.PendingOut)
def device_pending(ref: PathName, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    """The device's pending security update: version, due date, postponement, state (due, waiting, postponed, opt_out)."""
    return _svc(svc).device_status(who, ref)


@router.post("/security/run", response_model=ss.RunOut)
def run(who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    """Apply the policy now instead of at the job's next minute (operators): due devices get their update."""
    return _svc(svc).apply_now(who)
