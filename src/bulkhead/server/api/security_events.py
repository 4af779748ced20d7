"""Management API of the device security log (CRA Annex I): a device's security events and the tenant's, paged."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from bulkhead.protocol import SecurityEvent

from ..services import security_events
from ..services.auth import Principal
from ..services.devices import find_device
from .deps import Services, principal, services
from .paging import PAGED, Pager, pager
from .wire import Out, Time

__all__ = ["SecurityEventOut", "router"]

router = APIRouter(prefix="/api/v1", tags=["security"])

_KINDS = ", ".join(SecurityEvent)


class SecurityEventOut(Out):
    """One security event a device reported: what, when, the tool's own words and the release concerned."""

    id: int
    device: str
    seq: int = Field(description="the device's own number of the event")
    kind: str = Field(description=f"{_KINDS}")
    integrity: bool = Field(description="a bundle failed its signature, verity or sha256 check (raises a notification)")
    message: str | None = Field(description="RAUC's or the agent's own words (at most 1000 characters)")
    release_id: int | None
    version: str | None = Field(description="the version of the release concerned")
    details: dict[str, Any] = Field(description="what else the agent said (slot, expected_slot, artifact, ...)")
    device_time: Time | None = Field(description="when it happened, by the device's clock")
    at: Time = Field(description="when the server received it")


def _list(who: Principal, svc: Services, pg: Pager, device: str | None, kind: str | None) -> list[dict[str, Any]]:
    who.require("viewer")
    tid = who.require_tenant()
    with svc.db.session() as s:
        device_id = find_device(s, tid, device).id if device is not None else None
        return pg.send(security_events.page(s, tid, pg.page, device_id, kind))


_KIND_DOC = f"only events of this kind: {_KINDS}"


@router.get("/devices/{ref}/security-events", response_model=list[SecurityEventOut], responses=PAGED)
def device_security_events(
    ref: str,
    kind: str | None = Query(None, description=_KIND_DOC, max_length=64),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """The device's security log, newest first, a page at a time."""
    return _list(who, svc, pg, ref, kind)


@router.get("/security-events", response_model=list[SecurityEventOut], responses=PAGED)
def tenant_security_events(
    kind: str | None = Query(None, description=_KIND_DOC, max_length=64),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """Every device's security events, newest first, a page at a time."""
    return _list(who, svc, pg, None, kind)
