"""Audit events: who did what to which object."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import AuditEvent
from .auth import Principal

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


def recent(s: Session, who: Principal, action_prefix: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The tenant's audit log, newest first (admins and operators)."""
    who.require("operator")
    q = select(AuditEvent).where(AuditEvent.tenant_id == who.require_tenant())
    if action_prefix:
        q = q.where(AuditEvent.action.startswith(action_prefix))
    rows = s.scalars(q.order_by(AuditEvent.id.desc()).limit(min(max(limit, 1), 1000)))
    return [
        {"at": e.at.isoformat(), "actor": e.actor, "action": e.action, "subject": e.subject, "details": e.details} for e in rows
    ]
