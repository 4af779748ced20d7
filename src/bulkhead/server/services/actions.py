"""A device's rollout actions (an OS release's, an app version's or a package set's): their status (the transition
table applied, history kept), which one a device has open now, and whether it may install now (the maintenance
window). Used by the rollout service and by the device paths (agent state, hawkBit DDI)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from bulkhead.protocol import action_may

from ..models import Action, App, Device, DeviceGroup, Rollout, utcnow
from .rollout_plan import TERMINAL, next_opening, window_open
from .rollout_sql import HISTORY_LIMIT, offered

__all__ = [
    "Gate",
    "action_json",
    "effective_window",
    "install_gate",
    "note",
    "open_action",
    "open_app_actions",
    "open_package_action",
    "record_status",
]

_PRIORITY = {"forced": 0, "soft": 1, "download_only": 2}


def action_json(a: Action, device: Device | None = None) -> dict[str, Any]:
    moved = a.bytes_done or 0  # counted by the delivery app's flush while the action is open
    return {
        "id": a.id,
        "rollout_id": a.rollout_id,
        "device_id": a.device_id,
        "device": device.name if device else None,
        "release_id": a.release_id,
        "app_id": a.app_id,
        "phase": a.phase,
        "type": a.action_type,
        "status": a.status,
        "active": a.active,
        "bytes": moved,
        "history": a.history,
        "updated_at": a.updated_at.isoformat(),
    }


def note(a: Action, message: str | None, source: str = "server") -> None:
    """Append to an action's history (bounded) without changing its status."""
    entry: dict[str, Any] = {"at": utcnow().isoformat(), "status": a.status, "source": source}
    if message:
        entry["message"] = message[:2000]
    a.history = [*(a.history or []), entry][-HISTORY_LIMIT:]
    a.updated_at = utcnow()


def record_status(a: Action, status: str, message: str | None = None, source: str = "server") -> None:
    """Set an action's status and note it. Terminal statuses close it; so does `downloaded` for a download-only action.

    Only what the transition table allows (a closed action never reopens; a device's late report after the end
    goes into the history only); the server itself asking for anything else is a bug.
    """
    if a.status is not None and not action_may(a.status, status):
        if source != "device":
            raise RuntimeError(f"action {a.id}: {a.status} -> {status} is not an allowed transition")
        note(a, f"ignored: '{status}' after '{a.status}'" + (f": {message}" if message else ""), source)
        return
    a.status = status
    note(a, message, source)
    if status in TERMINAL or (status == "downloaded" and a.action_type == "download_only"):
        a.active = False
        a.closed_at = a.updated_at
    if status == "success":
        _adopt(a)


def _adopt(a: Action) -> None:
    """A successful action's release or app version becomes the device's own desired state, so it stays after
    the action closes (instead of the device going back to what its groups ask for)."""
    s = object_session(a)
    dev = s.get(Device, a.device_id) if s is not None else None
    if dev is None:
        return
    if a.release_id is not None:
        dev.desired_release_id = a.release_id
        return
    if a.app_id is None:  # a package rollout's: its packages join the device's own
        r = s.get(Rollout, a.rollout_id) if s is not None else None
        if r is not None and r.packages:
            desired = dict(dev.desired or {})
            packages = {**(desired.get("packages") or {}), **r.packages}
            desired["packages"] = {n: packages[n] for n in sorted(packages)}
            dev.desired = desired
        return
    app = s.get(App, a.app_id) if s is not None else None
    if app is not None:
        desired = dict(dev.desired or {})
        desired["apps"] = {**(desired.get("apps") or {}), app.name: app.version}
        dev.desired = desired


def _first(a: Action) -> tuple[int, int]:
    return (_PRIORITY.get(a.action_type, 9), a.id)


def open_action(s: Session, device_id: int) -> Action | None:
    """The device's highest-priority open OS action: forced before soft before download-only, then the oldest."""
    rows = list(
        s.scalars(
            select(Action).where(
                Action.device_id == device_id, Action.active.is_(True), Action.release_id.is_not(None), offered()
            )
        )
    )
    return min(rows, key=_first) if rows else None


def open_app_actions(s: Session, device_id: int) -> list[tuple[Action, App]]:
    """The device's open app actions, the highest-priority one per app name."""
    rows = s.execute(
        select(Action, App)
        .join(App, App.id == Action.app_id)
        .where(Action.device_id == device_id, Action.active.is_(True), offered())
    )
    best: dict[str, tuple[Action, App]] = {}
    for a, app in rows:
        if app.name not in best or _first(a) < _first(best[app.name][0]):
            best[app.name] = (a, app)
    return [best[n] for n in sorted(best)]


def open_package_action(s: Session, device_id: int) -> tuple[Action, dict[str, Any]] | None:
    """The device's highest-priority open package action and its rollout's packages."""
    rows = s.execute(
        select(Action, Rollout.packages)
        .join(Rollout, Rollout.id == Action.rollout_id)
        .where(
            Action.device_id == device_id,
            Action.active.is_(True),
            Action.release_id.is_(None),
            Action.app_id.is_(None),
            offered(),
        )
    ).all()
    if not rows:
        return None
    a, packages = min(rows, key=lambda row: _first(row[0]))
    return a, packages or {}


def effective_window(s: Session, rollout: Rollout, device: Device) -> dict[str, Any] | None:
    """The rollout's own window, else the first of the device's groups that has one."""
    if rollout.window:
        return rollout.window
    if not device.groups:
        return None
    groups = {
        g.name: g.window
        for g in s.scalars(
            select(DeviceGroup).where(DeviceGroup.tenant_id == device.tenant_id, DeviceGroup.name.in_(device.groups))
        )
    }
    return next((groups[n] for n in device.groups if groups.get(n)), None)


@dataclass(frozen=True)
class Gate:
    """Whether a device may install its action's release now, when the window opens, and which window applies."""

    install: bool
    opens_at: dt.datetime | None
    window: dict[str, Any] | None


def install_gate(s: Session, action: Action, device: Device, now: dt.datetime) -> Gate:
    rollout = s.get(Rollout, action.rollout_id)
    window = effective_window(s, rollout, device) if rollout else None
    if action.action_type == "download_only":
        return Gate(False, None, window)
    if window_open(window, now):
        return Gate(True, None, window)
    assert window is not None
    return Gate(False, next_opening(window, now), window)
