"""Which group and tag names exist in a tenant, for references that must name something real."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Invalid, NotFound
from ..models import Device, DeviceGroup
from .device_list import array_counts

__all__ = ["NAME", "NAME_RULE", "check_group_names", "find_group", "known_groups", "known_tags", "listing"]

# A device, group or tag name. Names appear in URLs (/groups/{name}) and in devices' JSON lists, so an empty name or
# one with spaces, slashes or control characters would name nothing a client can address.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
NAME_RULE = "1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"


def check_group_names(names: Iterable[str]) -> list[str]:
    """The group names in their order without repeats, or Invalid naming the first that is not a valid name."""
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or not NAME.match(name):
            raise Invalid(f"group name {name!r} is invalid: {NAME_RULE}")
        if name not in out:
            out.append(name)
    return out


def known_groups(s: Session, tid: int) -> list[str]:
    """Groups created (group create, a bootstrap token, group set) and groups devices are in (provisioning)."""
    names = set(s.scalars(select(DeviceGroup.name).where(DeviceGroup.tenant_id == tid)))
    return sorted(names | set(array_counts(s, tid, Device.groups)))


def known_tags(s: Session, tid: int) -> list[str]:
    return sorted(array_counts(s, tid, Device.tags))


def listing(names: Iterable[str], limit: int = 20) -> str:
    """'a, b, c' (at most `limit`, then '… and N more'), or 'none'."""
    items = list(names)
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} … and {len(items) - limit} more"


def find_group(s: Session, tid: int, name: str, add_row: bool = True) -> DeviceGroup:
    """The tenant's group `name`, or NotFound listing the groups that exist. A group that only devices name
    (provisioned with it) gets its row now (`add_row`), so it can carry a window and a desired state."""
    g = s.scalar(select(DeviceGroup).where(DeviceGroup.tenant_id == tid, DeviceGroup.name == name))
    if g is not None:
        return g
    existing = known_groups(s, tid)
    if name in existing:
        g = DeviceGroup(tenant_id=tid, name=name, desired={}, window=None)
        if add_row:
            check_group_names([name])  # a name stored before names were checked gets no row of its own
            s.add(g)
        return g
    raise NotFound(f"group '{name}' does not exist; groups: {listing(existing)} (create it with 'bulkhead group create')")
