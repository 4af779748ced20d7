"""The device security log (CRA Annex I): security events as agents report them, checked, listed and counted.

A security event is a device event of kind `security` (one row of `device_events`, written by the report path's
batched insert like every other event); its kind (bulkhead.protocol.SecurityEvent) is `details.event`, RAUC's or the
agent's own words `details.message`. Partial indexes on the rows of kind `security` (migration 0022) keep the lists
and counts to those rows, however many other events there are.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from bulkhead.protocol import INTEGRITY_EVENTS, MAX_SECURITY_MESSAGE, EventKind, SecurityEvent

from ..errors import Invalid
from ..models import Device, DeviceEvent, Release
from .keyset import Page, Paged, keyset, paged

__all__ = [
    "INTEGRITY",
    "KINDS",
    "check_details",
    "counts",
    "device_counts",
    "event_json",
    "event_kind",
    "is_security",
    "page",
    "rows_of",
]

KINDS = tuple(SecurityEvent)
INTEGRITY = tuple(sorted(INTEGRITY_EVENTS))
SECURITY = EventKind.SECURITY.value


def is_security() -> Any:
    """`kind = 'security'` with the constant in the SQL text: SQLite and PostgreSQL's generic plans use a partial
    index only when the query's condition matches the index's literally (a bound parameter does not)."""
    return DeviceEvent.kind == literal_column(f"'{SECURITY}'")


def check_details(seq: int, phase: object, details: dict[str, Any]) -> None:
    """Refuse (Invalid: a 4xx, the whole report unrecorded) a security event the log could not show."""
    if phase is not None:
        raise Invalid(f"event {seq}: a security event has no phase (send null)")
    kind = details.get("event")
    if kind not in KINDS:
        raise Invalid(f"event {seq}: a security event's details.event must be one of {', '.join(KINDS)}, not {kind!r}")
    message = details.get("message")
    if message is not None and (not isinstance(message, str) or len(message) > MAX_SECURITY_MESSAGE):
        raise Invalid(f"event {seq}: details.message must be text of at most {MAX_SECURITY_MESSAGE} characters")


def event_kind() -> Any:
    """The SQL expression of a security event's kind (details.event)."""
    return DeviceEvent.details["event"].as_string()


def check_kind(kind: str | None) -> str | None:
    if kind is not None and kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def event_json(row: Any) -> dict[str, Any]:
    """One security event as the API and the Annex VII export show it, from a (DeviceEvent, device name, version) row."""
    e, device, version = row
    d = e.details or {}
    return {
        "id": e.id,
        "device": device,
        "seq": e.seq,
        "kind": d.get("event"),
        "integrity": d.get("event") in INTEGRITY_EVENTS,
        "message": d.get("message"),
        "release_id": e.release_id,
        "version": version or d.get("version"),
        "details": {k: v for k, v in d.items() if k not in ("event", "message")},
        "device_time": e.device_time.isoformat() if e.device_time else None,
        "at": e.at.isoformat(),
    }


def rows_of() -> Any:
    """The query of security events with their device's name and their release's version (add where and order)."""
    return (
        select(DeviceEvent, Device.name, Release.version)
        .join(Device, Device.id == DeviceEvent.device_id)
        .outerjoin(Release, Release.id == DeviceEvent.release_id)
        .where(is_security())
    )


def page(s: Session, tenant_id: int, pg: Page, device_id: int | None = None, kind: str | None = None) -> Paged[dict[str, Any]]:
    """One page of the tenant's (or one device's) security events, newest first."""
    q = rows_of().where(DeviceEvent.tenant_id == tenant_id)
    if device_id is not None:
        q = q.where(DeviceEvent.device_id == device_id)
    if check_kind(kind) is not None:
        q = q.where(event_kind() == kind)
    rows = list(s.execute(keyset(q, [DeviceEvent.id], pg, descending=True)))
    return paged(rows, pg, lambda r: (r[0].id,), event_json)


def device_counts(s: Session, device_id: int) -> dict[str, int]:
    """A device's security events per kind (only the kinds it had)."""
    rows = (
        select(event_kind().label("kind")).where(DeviceEvent.device_id == device_id, is_security()).subquery()
    )  # grouped outside: PostgreSQL does not match a JSON path with a bound key in GROUP BY to the one in SELECT
    return {str(k): int(n) for k, n in s.execute(select(rows.c.kind, func.count()).group_by(rows.c.kind))}


def counts(s: Session, tenant_id: int | None) -> list[tuple[int, str, int]]:
    """(tenant id, kind, count) of every tenant's security events, or one tenant's."""
    q = select(DeviceEvent.tenant_id.label("tenant_id"), event_kind().label("kind")).where(is_security())
    if tenant_id is not None:
        q = q.where(DeviceEvent.tenant_id == tenant_id)
    rows = q.subquery()
    grouped = select(rows.c.tenant_id, rows.c.kind, func.count()).group_by(rows.c.tenant_id, rows.c.kind)
    return [(int(t), str(k), int(n)) for t, k, n in s.execute(grouped)]
