"""The one place a device row is made: by enrollment, by an operator's provisioning, or by DDI auto-registration."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ..models import Device

__all__ = ["add_device"]


def add_device(
    s: Session,
    tenant_id: int,
    name: str,
    compatible: str,
    status: str,
    groups: list[str] | None = None,
    attributes: dict[str, Any] | None = None,
    credential_hash: str | None = None,
    enrolled_with: int | None = None,
) -> Device:
    """A new device of the tenant, added to the session (flush to get its id). The caller checked the name."""
    dev = Device(
        tenant_id=tenant_id,
        name=name,
        compatible=compatible,
        status=status,
        credential_hash=credential_hash,
        groups=list(groups or []),
        tags=[],
        attributes=dict(attributes or {}),
        reported={},
        enrolled_with=enrolled_with,
    )
    s.add(dev)
    return dev
