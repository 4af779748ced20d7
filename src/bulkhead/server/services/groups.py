"""Device groups as first-class objects: list, show, create, delete, and which devices are in them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..changes import ChangeFeed
from ..db import Database
from ..errors import Conflict, NotFound
from ..models import BootstrapToken, Device, DeviceGroup, Rollout
from . import audit
from .auth import Principal
from .device_list import group_counts, json_array_has
from .devices import find_device
from .fleet_names import check_group_names, find_group, listing
from .keyset import Page, Paged, check_after, paged
from .shared_counts import SharedCounts

__all__ = ["GroupService"]


def _members(s: Session, tid: int, name: str) -> list[str]:
    q = select(Device.name).where(Device.tenant_id == tid, json_array_has(s, Device.groups, [name]))
    return list(s.scalars(q.order_by(Device.name)))


def _group_json(g: DeviceGroup, members: list[str], with_devices: bool) -> dict[str, Any]:
    desired = g.desired or {}
    out: dict[str, Any] = {
        "name": g.name,
        "devices": len(members),
        "release_id": desired.get("release_id"),
        "apps": desired.get("apps") or {},
        "files": [f["path"] for f in desired.get("files") or []],
        "window": g.window,
    }
    if with_devices:
        out["device_names"] = members
    return out


def _users(s: Session, tid: int, name: str, token_names: bool) -> list[str]:
    """What refers to the group by name: rollouts that are not canceled and bootstrap tokens not revoked
    (named only for admins, who alone may see bootstrap tokens)."""
    found = []
    for r in s.scalars(select(Rollout).where(Rollout.tenant_id == tid, Rollout.status != "canceled")):
        if name in ((r.target or {}).get("groups") or []) or any(p.get("group") == name for p in r.phases or []):
            found.append(f"rollout '{r.name}'")
    tokens = list(
        s.scalars(
            select(BootstrapToken).where(
                BootstrapToken.tenant_id == tid, BootstrapToken.group_name == name, BootstrapToken.revoked.is_(False)
            )
        )
    )
    if token_names:
        found += [f"bootstrap token '{b.name}' (id {b.id})" for b in tokens]
    elif tokens:
        found.append(f"{len(tokens)} bootstrap token(s) (an admin can list and revoke them)")
    return found


def _is_admin(who: Principal) -> bool:
    return who.kind == "system" or who.role == "admin"


# Device counts per group are one pass over the tenant's devices (a few hundred ms at 100,000 under load): a process
# shares one count until a device of the tenant changes (the change feed: every host within its delay), at most this
# long. Without a feed (a service made for a script) each list counts.
COUNTS_TTL = 60.0


class GroupService:
    def __init__(self, db: Database, on_change: Callable[[], object] = lambda: None, feed: ChangeFeed | None = None) -> None:
        self.db = db
        # Called after a device's membership changed: running rollouts may take it in.
        self.on_change = on_change
        self.counts: SharedCounts[int, dict[str, int]] | None = None
        if feed is not None:
            # Any device change in the tenant invalidates them (an action moved, a report): during a burst readers
            # get the count being replaced rather than wait for one recount after another.
            self.counts = SharedCounts(group_counts, COUNTS_TTL, feed.fleet_valid, stale_while_counting=True)

    def list_groups(self, who: Principal, page: Page) -> Paged[dict[str, Any]]:
        """One page of the groups by name: created ones and those devices were provisioned into, with device counts
        (counted in SQL: one pass over the tenant's device group lists, no device rows loaded)."""
        who.require("viewer")
        tid = who.require_tenant()
        check_after(page, [DeviceGroup.name])
        with self.db.read() as s:
            counts = self.counts.read(s, tid) if self.counts is not None else group_counts(s, tid)
            created = set(s.scalars(select(DeviceGroup.name).where(DeviceGroup.tenant_id == tid)))
            names = sorted(n for n in created | set(counts) if page.after is None or n > page.after[0])[: page.limit + 1]
            rows = {
                g.name: g for g in s.scalars(select(DeviceGroup).where(DeviceGroup.tenant_id == tid, DeviceGroup.name.in_(names)))
            }

            def render(name: str) -> dict[str, Any]:
                g = rows.get(name) or DeviceGroup(tenant_id=tid, name=name, desired={}, window=None)
                return {**_group_json(g, [], False), "devices": counts.get(name, 0)}

            return paged(names, page, lambda n: (n,), render)

    def show(self, who: Principal, name: str) -> dict[str, Any]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            g = find_group(s, tid, name, add_row=False)
            out = _group_json(g, _members(s, tid, name), True)
            out["referenced_by"] = _users(s, tid, name, _is_admin(who))
            return out

    def create(self, who: Principal, name: str) -> dict[str, Any]:
        who.require("operator")
        tid = who.require_tenant()
        check_group_names([name])
        with self.db.session() as s:
            if s.scalar(select(DeviceGroup.id).where(DeviceGroup.tenant_id == tid, DeviceGroup.name == name)) is not None:
                raise Conflict(f"group '{name}' exists already")
            g = DeviceGroup(tenant_id=tid, name=name, desired={})
            s.add(g)
            audit.record(s, who, "group.create", name)
            return _group_json(g, _members(s, tid, name), True)

    def delete(self, who: Principal, name: str) -> None:
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            g = find_group(s, tid, name, add_row=False)
            users = _users(s, tid, name, _is_admin(who))
            if users:
                raise Conflict(
                    f"group '{name}' is used by {listing(users)}; cancel or delete those rollouts and revoke those tokens first"
                )
            members = _members(s, tid, name)
            if members:
                raise Conflict(
                    f"group '{name}' still has devices: {listing(members)}; "
                    f"remove them first ('bulkhead group remove-device {name} DEVICE')"
                )
            audit.record(s, who, "group.delete", name)
            if g.id is not None:
                s.delete(g)

    def add_device(self, who: Principal, name: str, device: str) -> dict[str, Any]:
        return self._membership(who, name, device, add=True)

    def remove_device(self, who: Principal, name: str, device: str) -> dict[str, Any]:
        return self._membership(who, name, device, add=False)

    def _membership(self, who: Principal, name: str, device: str, add: bool) -> dict[str, Any]:
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            dev = find_device(s, tid, device)
            groups = list(dev.groups or [])
            if add:
                find_group(s, tid, name)
                if name in groups:
                    raise Conflict(f"device '{dev.name}' is in group '{name}' already")
                dev.groups = [*groups, name]
            else:
                if name not in groups:
                    raise NotFound(f"device '{dev.name}' is not in group '{name}'; its groups: {listing(groups)}")
                dev.groups = [x for x in groups if x != name]
            audit.record(s, who, "group.add_device" if add else "group.remove_device", name, device=dev.name)
            out = {"device": dev.name, "groups": dev.groups}
        self.on_change()
        return out
