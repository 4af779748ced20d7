"""Audit events: who did what to which object."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ..models import AuditEvent
from .auth import Principal

__all__ = ["record"]


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
