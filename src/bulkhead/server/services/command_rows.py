"""What a device's state answer lists of its remote commands (services/device_commands.py): the pending ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bulkhead.protocol.commands import CommandStatus

from ..command_models import DeviceCommand

__all__ = ["MAX_PENDING", "pending_commands"]

MAX_PENDING = 20  # per device: a device offline for long does not pile up work


def pending_commands(s: Session, device_id: int) -> list[dict[str, Any]]:
    """The device's pending commands, oldest first, as its state answer lists them."""
    rows = s.scalars(
        select(DeviceCommand)
        .where(DeviceCommand.device_id == device_id, DeviceCommand.status == CommandStatus.PENDING)
        .order_by(DeviceCommand.id)
        .limit(MAX_PENDING)
    )
    return [{"id": c.id, "argv": c.argv, "timeout_seconds": c.timeout_seconds} for c in rows]
