"""Management API of notifications: /api/v1/notifications/subscriptions (admins change, operators read) and the
delivery log /api/v1/notifications/deliveries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from ..ids import MAX_ID, DbId
from ..services.auth import Principal
from ..services.notifications import NotificationService
from . import notify_schemas as ns
from .deps import Services, principal, services

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


def _svc(svc: Services) -> NotificationService:
    assert svc.notifications is not None, "the server was built without notifications"
    return svc.notifications


@router.post("/subscriptions", response_model=ns.SubscriptionWithSecret, status_code=201)
def add_subscription(
    body: ns.SubscriptionIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Subscribe a webhook URL or an e-mail address to event kinds (admins; audited). A webhook's secret is in this
    answer only."""
    return _svc(svc).add(who, body.channel, body.target, body.events)


@router.get("/subscriptions", response_model=list[ns.SubscriptionOut])
def list_subscriptions(who: Principal = Depends(principal), svc: Services = Depends(services)) -> list[dict[str, Any]]:
    """The tenant's subscriptions (operators)."""
    return _svc(svc).list_subscriptions(who)


@router.delete("/subscriptions/{sub_id}", status_code=204)
def remove_subscription(sub_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """Remove a subscription and its delivery log (admins; audited)."""
    _svc(svc).remove(who, sub_id)
    return Response(status_code=204)


@router.post("/subscriptions/{sub_id}/test", response_model=ns.DeliveryOut)
def test_subscription(sub_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Send a test event now (admins; audited); the answer is its delivery with the first attempt (retried as usual)."""
    return _svc(svc).test(who, sub_id)


@router.get("/deliveries", response_model=list[ns.DeliveryOut])
def deliveries(
    subscription: int | None = Query(None, ge=1, le=MAX_ID, description="only this subscription's deliveries"),
    limit: int = Query(100, ge=1, le=1000, description="at most this many, newest first"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """The delivery log, newest first, each delivery with every attempt (operators)."""
    return _svc(svc).deliveries(who, subscription, limit)
