"""Factory reset: an administrator asks a device to erase its data partition and enroll again.

The request stands in the device's state answer (`factory_reset`) until the device enrolls again. The agent keeps
its credential outside the partition it erases and proves itself with it when it enrolls after the erasure: that
re-enrollment needs no bootstrap token (one baked into an image years ago may be revoked or used up), and holding a
bootstrap token is not enough to take the device's name while it is being reset.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bulkhead.protocol import DeviceStatus

from ..errors import Conflict, Unauthorized
from ..models import Device, utcnow
from ..security import PREFIX_DEVICE, hash_token, new_token
from . import audit
from .auth import Principal

__all__ = ["cancel", "reenroll_proven", "request"]


def request(s: Session, who: Principal, dev: Device) -> None:
    """Record the request (a second one keeps the first one's time). Refused for a device without the agent."""
    who.require("admin")  # it destroys the data on the device
    if dev.enrolled_with is None:
        raise Conflict(
            f"device '{dev.name}' was provisioned or registered over DDI: only Bulkhead's agent erases its data "
            "partition on request; reset such a device on site"
        )
    if dev.status == DeviceStatus.DISABLED:
        raise Conflict(f"device '{dev.name}' is disabled and never hears of the request: enable it first")
    if dev.factory_reset_at is None:
        dev.factory_reset_at = utcnow()
    audit.record(s, who, "device.factory_reset", dev.name)


def cancel(s: Session, who: Principal, dev: Device) -> None:
    """Withdraw a request the device has not carried out yet (one that did erase its data re-enrolls all the same)."""
    who.require("admin")
    if dev.factory_reset_at is None:
        raise Conflict(f"device '{dev.name}' has no factory reset pending")
    dev.factory_reset_at = None
    audit.record(s, who, "device.factory_reset_cancel", dev.name)


def reenroll_proven(
    s: Session, name: str, previous_credential: str, compatible: str, attributes: dict[str, Any]
) -> dict[str, Any]:
    """A device that erased its data enrolls again with the credential it held: a new credential for it, every
    signed URL of the old one dead (epoch), status kept (a disabled device stays disabled), the request done."""
    ch = hash_token(previous_credential)
    dev = s.scalar(
        select(Device)
        .where(or_(Device.credential_hash == ch, Device.previous_credential_hash == ch), Device.name == name)
        .with_for_update()
    )
    if dev is None:
        raise Unauthorized(
            f"that credential is not device '{name}''s: a device that lost its credential enrolls with a bootstrap "
            f"token after an operator's 'bulkhead device reset-credential {name}'"
        )
    credential, dev.credential_hash = new_token(PREFIX_DEVICE)
    dev.previous_credential_hash = None
    dev.credential_epoch = (dev.credential_epoch or 0) + 1
    dev.compatible, dev.attributes = compatible, {**dev.attributes, **attributes}
    dev.reenroll_allowed = False
    dev.report_seq = 0  # an agent on an erased partition numbers its events from 1 again
    reset = dev.factory_reset_at is not None
    dev.factory_reset_at = None
    dev.last_seen = utcnow()
    audit.record(s, Principal("device", name, dev.tenant_id), "device.reenroll", name, dev.tenant_id, factory_reset=reset)
    return {"device_id": dev.id, "name": name, "credential": credential, "status": dev.status}
