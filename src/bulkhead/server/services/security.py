"""Security updates by policy: mark releases, set policies, postpone (audited, limited), what a device has pending.

The decision is pure (security_plan.py), what it reads is loaded by security_rows.py, and the job that gives due
devices their security release is security_job.py. See docs/adr/0006-security-updates-by-policy.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import Conflict, Invalid, NotFound
from ..models import Action, Device, Release, Rollout
from ..security_models import SecurityMark, SecurityPolicyRow, SecurityPostponement
from . import audit
from .auth import Principal
from .clock import Clock, system_clock
from .device_list import json_array_has
from .devices import find_device
from .fleet_names import find_group
from .lookups import tenant_release
from .rollout_sql import mark_devices, mark_tenant
from .security_job import SecurityJob
from .security_plan import Decision, due_at, effective_policy, parse_policy, postpone_until
from .security_rows import load_view, policy_rollout
from .times import parse_time

__all__ = ["SecurityService"]

MAX_REASON = 2000


def _mark_json(m: SecurityMark, rel: Release, r: Rollout | None) -> dict[str, Any]:
    return {
        "release_id": rel.id,
        "compatible": rel.compatible,
        "version": rel.version,
        "available_at": m.available_at.isoformat(),
        "marked_by": m.marked_by,
        "reason": m.reason,
        "rollout": {"id": r.id, "name": r.name, "status": r.status} if r is not None else None,
    }


def _policy_json(p: SecurityPolicyRow, device: str | None = None) -> dict[str, Any]:
    scope = p.key.split(":", 1)[0]
    return {
        "scope": scope,
        "group": p.group_name,
        "device": device,
        "mode": p.mode,
        "window_days": p.window_days,
        "updated_by": p.updated_by,
        "updated_at": p.updated_at.isoformat(),
    }


def _postponement_json(p: SecurityPostponement, device: str | None = None, version: str | None = None) -> dict[str, Any]:
    return {
        "id": p.id,
        "release_id": p.release_id,
        "version": version,
        "group": p.group_name,
        "device": device,
        "until": p.until.isoformat(),
        "reason": p.reason,
        "postponed_by": p.postponed_by,
        "created_at": p.created_at.isoformat(),
        "updated_at": p.updated_at.isoformat(),
    }


def _reason(raw: Any, required: bool) -> str | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            raise Invalid("say why (reason): a postponement of a security update is audited with who and why")
        return None
    if not isinstance(raw, str) or len(raw) > MAX_REASON:
        raise Invalid(f"reason must be text of at most {MAX_REASON} characters")
    return raw.strip()


class SecurityService:
    def __init__(
        self,
        db: Database,
        window_days: int = 7,
        max_postpone_days: int = 30,
        clock: Clock = system_clock,
        on_rollout: Callable[[int, dt.datetime], object] = lambda _rid, _now: None,
    ) -> None:
        self.db, self.window_days, self.max_postpone_days, self.clock = db, window_days, max_postpone_days, clock
        self.job = SecurityJob(db, window_days, on_rollout)

    # -- what decisions read ------------------------------------------------------------------
    @staticmethod
    def _desired_version(s: Session, dev: Device) -> str | None:
        return s.scalar(select(Release.version).where(Release.id == dev.desired_release_id)) if dev.desired_release_id else None

    def pending(self, s: Session, dev: Device, now: dt.datetime | None = None) -> Decision | None:
        """The security update the device is to get, and where it stands at `now` (None: none pending)."""
        t = load_view(s, dev.tenant_id, self.window_days, dev.compatible, dev.id)
        if not t.releases:
            return None
        return t.decide(
            dev.compatible, dev.id, list(dev.groups or []), dev.os_version, self._desired_version(s, dev), now or self.clock()
        )

    def device_answer(self, dev: Device) -> dict[str, Any] | None:
        """What the device's state answer carries about its pending security update (nothing that changes with the
        clock alone, so a cached answer stays true): version, due date, postponement, when it installs. `dev`: the
        device as the answer read it (not read again)."""
        with self.db.session() as s:
            d = self.pending(s, dev)
            if d is None:
                return None
            out = d.json()
            out.pop("state")
            out["mode"] = out.pop("policy")["mode"]
            return out

    def device_status(self, who: Principal, ref: str) -> dict[str, Any]:
        who.require("viewer")
        with self.db.session() as s:
            dev = find_device(s, who.require_tenant(), ref)
            d = self.pending(s, dev)
            return {"device": dev.name, "os_version": dev.os_version, "pending": d.json() if d is not None else None}

    # -- marking releases ---------------------------------------------------------------------
    def mark(self, who: Principal, release_id: int, available_at: Any = None, reason: Any = None) -> dict[str, Any]:
        """Mark a release a security update, available as one from `available_at` (default: now). Audited."""
        who.require("operator")
        tid = who.require_tenant()
        now = self.clock()
        when = parse_time(available_at, "available_at") if available_at is not None else now
        if when > now + dt.timedelta(minutes=5):
            raise Invalid("available_at must not lie in the future: the window counts from when the fix is available")
        why = _reason(reason, required=False)
        with self.db.session() as s:
            rel = tenant_release(s, tid, release_id)
            m = s.get(SecurityMark, rel.id)
            if m is None:
                m = SecurityMark(release_id=rel.id, tenant_id=tid, available_at=when, marked_by=f"{who.kind}:{who.name}")
                s.add(m)
            m.available_at, m.reason = when, why
            s.flush()
            audit.record(s, who, "release.security", f"{rel.compatible} {rel.version}", available_at=when.isoformat(), reason=why)
            mark_tenant(s, tid, now)
            return _mark_json(m, rel, policy_rollout(s, tid, rel.id))

    def unmark(self, who: Principal, release_id: int, rollouts: Any) -> None:
        """A release is no security update after all: its policy rollout is canceled, its postponements go. Audited."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            rel = tenant_release(s, tid, release_id)
            m = s.get(SecurityMark, rel.id)
            if m is None:
                raise NotFound(f"release {rel.version} is not marked a security update")
            r = policy_rollout(s, tid, rel.id)
            rid = r.id if r is not None and r.status not in ("finished", "canceled") else None
            s.execute(delete(SecurityPostponement).where(SecurityPostponement.release_id == rel.id))
            s.delete(m)
            audit.record(s, who, "release.security_unmark", f"{rel.compatible} {rel.version}")
            mark_tenant(s, tid, self.clock())
        if rid is not None:
            rollouts.cancel(Principal("system", "security-policy", tid), str(rid))

    def list_releases(self, who: Principal) -> list[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            q = select(SecurityMark, Release).join(Release, Release.id == SecurityMark.release_id)
            rows = s.execute(q.where(SecurityMark.tenant_id == tid).order_by(SecurityMark.release_id)).all()
            return [_mark_json(m, rel, policy_rollout(s, tid, rel.id)) for m, rel in rows]

    # -- policies -----------------------------------------------------------------------------
    def _target(self, s: Session, tid: int, scope: str, name: str | None) -> tuple[str, str | None, Device | None]:
        """The key of a policy or postponement target, and the group name or device it names (which must exist)."""
        if scope == "tenant":
            return "tenant", None, None
        if not isinstance(name, str) or not name:
            raise Invalid(f"name the {scope}")
        if scope == "group":
            g = find_group(s, tid, name, add_row=False)
            return f"group:{g.name}", g.name, None
        if scope == "device":
            dev = find_device(s, tid, name)
            return f"device:{dev.id}", None, dev
        raise Invalid(f"scope must be tenant, group or device (got {scope!r})")

    def set_policy(self, who: Principal, scope: str, name: str | None, mode: Any, window_days: Any) -> dict[str, Any]:
        """The security-update policy of the tenant (its default), a group or a device (a device's own wins over its
        groups', the last of its groups with one over the others). Audited."""
        who.require("operator")
        tid = who.require_tenant()
        policy = parse_policy(mode, window_days if window_days is not None else self.window_days, scope)
        with self.db.session() as s:
            key, group, dev = self._target(s, tid, scope, name)
            row = s.scalar(select(SecurityPolicyRow).where(SecurityPolicyRow.tenant_id == tid, SecurityPolicyRow.key == key))
            if row is None:
                row = SecurityPolicyRow(tenant_id=tid, key=key, group_name=group, device_id=dev.id if dev else None)
                s.add(row)
            row.mode, row.window_days = policy.mode, policy.window_days
            row.updated_by, row.updated_at = f"{who.kind}:{who.name}", self.clock()
            s.flush()
            audit.record(s, who, "security.policy", key, mode=policy.mode, window_days=policy.window_days)
            self._changed(s, tid, dev)
            return _policy_json(row, dev.name if dev else None)

    def clear_policy(self, who: Principal, scope: str, name: str | None) -> None:
        """Remove a policy: the group or device follows its groups' or the tenant's again (the tenant: automatic)."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            key, _group, dev = self._target(s, tid, scope, name)
            row = s.scalar(select(SecurityPolicyRow).where(SecurityPolicyRow.tenant_id == tid, SecurityPolicyRow.key == key))
            if row is None:
                raise NotFound(f"{key.replace(':', ' ', 1)} has no security-update policy of its own")
            s.delete(row)
            audit.record(s, who, "security.policy_clear", key)
            self._changed(s, tid, dev)

    def list_policies(self, who: Principal) -> dict[str, Any]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            t = load_view(s, tid, self.window_days)
            rows = list(
                s.scalars(select(SecurityPolicyRow).where(SecurityPolicyRow.tenant_id == tid).order_by(SecurityPolicyRow.key))
            )
            names = self._device_names(s, [r.device_id for r in rows if r.device_id is not None])
            return {
                "default": t.default.json(),
                "max_postpone_days": self.max_postpone_days,
                "policies": [_policy_json(r, names.get(r.device_id) if r.device_id else None) for r in rows],
            }

    @staticmethod
    def _device_names(s: Session, ids: list[int]) -> dict[int, str]:
        return {i: n for i, n in s.execute(select(Device.id, Device.name).where(Device.id.in_(ids)))} if ids else {}

    def _changed(self, s: Session, tid: int, dev: Device | None) -> None:
        now = self.clock()
        if dev is not None:
            mark_devices(s, tid, [dev.id], now)
        else:
            mark_tenant(s, tid, now)

    # -- postponements ------------------------------------------------------------------------
    def postpone(
        self,
        who: Principal,
        release_id: int,
        device: str | None,
        group: str | None,
        days: Any,
        until: Any,
        reason: Any,
    ) -> dict[str, Any]:
        """Postpone a security release for a device or a group: `days` more, or `until` a time; at most
        max_postpone_days past its due date in total (else 409 saying the limit). Audited with who and why. Devices
        of it that had not started the update lose their action until the postponement ends."""
        who.require("operator")
        tid = who.require_tenant()
        if (device is None) == (group is None):
            raise Invalid("give either device or group, not both")
        why = _reason(reason, required=True)
        end_at = parse_time(until, "until") if until is not None else None
        now = self.clock()
        with self.db.session() as s:
            rel = tenant_release(s, tid, release_id)
            if s.get(SecurityMark, rel.id) is None:
                raise Conflict(
                    f"release {rel.version} is not a security update, so nothing installs it by policy; "
                    "feature releases follow your rollouts"
                )
            key, group_name, dev = self._target(s, tid, "device" if device is not None else "group", device or group)
            t = load_view(s, tid, self.window_days, rel.compatible)
            sec = next(r for r in t.releases[rel.compatible] if r.id == rel.id)
            if dev is not None:
                policy = effective_policy(t.devices.get(dev.id), list(dev.groups or []), t.groups, t.default)
            else:
                policy = t.groups.get(group_name or "", t.default)
            due = due_at(sec, policy)
            row = s.scalar(
                select(SecurityPostponement).where(SecurityPostponement.release_id == rel.id, SecurityPostponement.key == key)
            )
            current = row.until if row is not None and row.until > now else None
            end = postpone_until(due, current, days, end_at, self.max_postpone_days, now)
            if row is None:
                row = SecurityPostponement(
                    tenant_id=tid,
                    release_id=rel.id,
                    key=key,
                    group_name=group_name,
                    device_id=dev.id if dev else None,
                    created_at=now,
                )
                s.add(row)
            row.until, row.reason, row.postponed_by, row.updated_at = end, why or "", f"{who.kind}:{who.name}", now
            s.flush()
            held = self._withdraw(s, tid, rel.id, dev, group_name, now)
            audit.record(
                s, who, "security.postpone", f"{rel.compatible} {rel.version}", target=key, until=end.isoformat(),
                due_at=due.isoformat(), reason=why, withdrawn=held,
            )  # fmt: skip
            self._changed(s, tid, dev)
            out = _postponement_json(row, dev.name if dev else None, rel.version)
            out["due_at"] = due.isoformat()
            out["withdrawn"] = held
            return out

    def _withdraw(self, s: Session, tid: int, release_id: int, dev: Device | None, group: str | None, now: dt.datetime) -> int:
        """Remove the policy rollout's actions that the postponed devices have not started (they come back when the
        postponement ends); started ones go on. Set-based: one DELETE."""
        r = policy_rollout(s, tid, release_id)
        if r is None:
            return 0
        if dev is not None:
            who = Action.device_id == dev.id
        else:
            who = Action.device_id.in_(
                select(Device.id).where(Device.tenant_id == tid, json_array_has(s, Device.groups, [group or ""]))
            )
        ids = list(
            s.scalars(
                delete(Action)
                .where(Action.rollout_id == r.id, Action.status == "scheduled", Action.active.is_(True), who)
                .returning(Action.device_id)
                .execution_options(synchronize_session=False)
            )
        )
        mark_devices(s, tid, ids, now)
        return len(ids)

    def end_postponement(self, who: Principal, pid: int, reason: Any = None) -> None:
        """End a postponement now (audited): its devices get the update at the job's next run once it is due."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            row = s.get(SecurityPostponement, pid)
            if row is None or row.tenant_id != tid:
                raise NotFound(f"postponement {pid} does not exist")
            audit.record(s, who, "security.postpone_end", row.key, release_id=row.release_id, reason=_reason(reason, False))
            dev = s.get(Device, row.device_id) if row.device_id else None
            s.delete(row)
            self._changed(s, tid, dev)

    def list_postponements(self, who: Principal, release_id: int | None) -> list[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            q = select(SecurityPostponement, Release.version).join(Release, Release.id == SecurityPostponement.release_id)
            q = q.where(SecurityPostponement.tenant_id == tid)
            if release_id is not None:
                q = q.where(SecurityPostponement.release_id == release_id)
            rows = s.execute(q.order_by(SecurityPostponement.id)).all()
            names = self._device_names(s, [p.device_id for p, _ in rows if p.device_id is not None])
            return [_postponement_json(p, names.get(p.device_id) if p.device_id else None, v) for p, v in rows]

    # -- the job ------------------------------------------------------------------------------
    def run(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Every tenant with security releases: devices that are due get the update (the periodic job)."""
        return self.job.run(now or self.clock())

    def apply_now(self, who: Principal) -> dict[str, Any]:
        """Run the policy for the caller's tenant now instead of at the job's next minute (operators)."""
        who.require("operator")
        placed = self.job.run_tenant(who.require_tenant(), self.clock())
        return {"placed": sum(placed.values()), "rollouts": placed}
