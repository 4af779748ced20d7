"""Audit events: who did what to which object."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import AuditEvent
from .auth import Principal
from .keyset import Page, Paged, keyset, paged

__all__ = ["recent", "record"]


def record(s: Session, who: Principal, action: str, subject: str, tenant_id: int | None = None, **details: Any) -> None:
    s.add(
        AuditEvent(
            tenant_id=tenant_id if tenant_id is not None else who.tenant_id,
            actor=f"{who.kind}:{who.name}",
            action=action,
            subject=subject,
            details=details,
        )
    )


def recent(s: Session, who: Principal, action_prefix: str | None, page: Page) -> Paged[dict[str, Any]]:
    """One page of the tenant's audit log, newest first (admins and operators)."""
    who.require("operator")
    q = select(AuditEvent).where(AuditEvent.tenant_id == who.require_tenant())
    if action_prefix:
        q = q.where(AuditEvent.action.startswith(action_prefix, autoescape=True))
    rows = list(s.scalars(keyset(q, [AuditEvent.id], page, descending=True)))
    return paged(rows, page, lambda e: (e.id,), _entry_json)


def _entry_json(e: AuditEvent) -> dict[str, Any]:
    return {"at": e.at.isoformat(), "actor": e.actor, "action": e.action, "subject": e.subject, "details": e.details}
