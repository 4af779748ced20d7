"""A device's reported history for operators: keyset pages of its events, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import DeviceEvent
from .devices import find_device
from .keyset import Page, Paged, keyset, paged

__all__ = ["event_json", "event_page"]


def event_json(e: DeviceEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "kind": e.kind,
        "phase": e.phase,
        "release_id": e.release_id,
        "details": e.details,
        "device_time": e.device_time.isoformat() if e.device_time else None,
        "at": e.at.isoformat(),
    }


def event_page(s: Session, tenant_id: int, ref: str, page: Page) -> Paged[dict[str, Any]]:
    """One page of the device's events by sequence number, newest first (NotFound if the tenant has no such device)."""
    dev = find_device(s, tenant_id, ref)
    q = select(DeviceEvent).where(DeviceEvent.device_id == dev.id)
    rows = list(s.scalars(keyset(q, [DeviceEvent.seq, DeviceEvent.id], page, descending=True)))
    return paged(rows, page, lambda e: (e.seq, e.id), event_json)
