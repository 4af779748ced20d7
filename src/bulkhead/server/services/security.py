"""Security updates by policy: mark releases, set policies, postpone (audited, limited), and the job that installs.

The decision is pure (security_plan.py); this module reads the fleet in buckets of devices that share what the
decision depends on (their groups, OS version and own desired release: one GROUP BY per compatible), decides once per
bucket, and gives the devices that are due an action in one rollout per security release, owned by the policy
(`ROLLOUT_OWNER`): progress, thresholds, maintenance windows, reporting and the agent's and DDI clients' paths are the
rollouts'. Devices with a policy or postponement of their own (set one by one by people) are decided one by one.
See docs/adr/0006-security-updates-by-policy.md.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, and_, delete, or_, select, true, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from bulkhead.protocol import RolloutStatus, rollout_may

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
from .rollout_plan import parse_phases
from .rollout_sql import insert_actions, mark_devices, mark_tenant
from .security_plan import (
    ROLLOUT_OWNER,
    Decision,
    Policy,
    SecurityRelease,
    decide,
    due_at,
    effective_policy,
    group_postponement,
    parse_policy,
    pick_release,
    postpone_until,
)
from .times import parse_time

__all__ = ["SecurityService"]

MAX_REASON = 2000


@dataclass
class _Tenant:
    """What a tenant's decisions read: its policies, security releases and postponements (all set by people)."""

    default: Policy
    groups: dict[str, Policy] = field(default_factory=dict)
    devices: dict[int, Policy] = field(default_factory=dict)
    releases: dict[str, list[SecurityRelease]] = field(default_factory=dict)  # by compatible
    group_until: dict[int, dict[str, dt.datetime]] = field(default_factory=dict)  # release id -> group -> until
    device_until: dict[int, dict[int, dt.datetime]] = field(default_factory=dict)  # release id -> device id -> until

    def decide(
        self,
        compatible: str,
        device_id: int | None,
        groups: list[str],
        running: str | None,
        desired: str | None,
        now: dt.datetime,
    ) -> Decision | None:
        rel = pick_release(self.releases.get(compatible, []), running, desired)
        if rel is None:
            return None
        policy = effective_policy(self.devices.get(device_id) if device_id else None, groups, self.groups, self.default)
        own = self.device_until.get(rel.id, {}).get(device_id) if device_id else None
        until = own if own is not None else group_postponement(groups, self.group_until.get(rel.id, {}))
        return decide(rel, policy, until, now)

    def special(self) -> set[int]:
        """Devices decided one by one: those with a policy or a postponement of their own."""
        ids = set(self.devices)
        for per in self.device_until.values():
            ids |= set(per)
        return ids


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
        # Called after the job gave a policy rollout new devices (the rollout service evaluates it).
        self.on_rollout = on_rollout

    # -- what decisions read ------------------------------------------------------------------
    def _tenant(self, s: Session, tid: int, compatible: str | None = None, device_id: int | None = None) -> _Tenant:
        """What decisions read; for one device (`device_id`: its state answer), only its own rows of devices' policies
        and postponements, so a poll reads a few rows however many devices have their own."""
        t = _Tenant(Policy("automatic", self.window_days, "tenant"))
        policies = select(SecurityPolicyRow).where(SecurityPolicyRow.tenant_id == tid)
        postponements = select(SecurityPostponement).where(SecurityPostponement.tenant_id == tid)
        if device_id is not None:
            policies = policies.where(or_(SecurityPolicyRow.device_id.is_(None), SecurityPolicyRow.device_id == device_id))
            postponements = postponements.where(
                or_(SecurityPostponement.device_id.is_(None), SecurityPostponement.device_id == device_id)
            )
        for p in s.scalars(policies):
            if p.key == "tenant":
                t.default = Policy(p.mode, p.window_days, "tenant")
            elif p.group_name is not None:
                t.groups[p.group_name] = Policy(p.mode, p.window_days, f"group {p.group_name}")
            elif p.device_id is not None:
                t.devices[p.device_id] = Policy(p.mode, p.window_days, "device")
        q = select(SecurityMark, Release.compatible, Release.version).join(Release, Release.id == SecurityMark.release_id)
        q = q.where(SecurityMark.tenant_id == tid)
        if compatible is not None:
            q = q.where(Release.compatible == compatible)
        for m, comp, version in s.execute(q.order_by(SecurityMark.release_id)):
            t.releases.setdefault(comp, []).append(SecurityRelease(m.release_id, version, m.available_at))
        for pp in s.scalars(postponements):
            if pp.group_name is not None:
                t.group_until.setdefault(pp.release_id, {})[pp.group_name] = pp.until
            elif pp.device_id is not None:
                t.device_until.setdefault(pp.release_id, {})[pp.device_id] = pp.until
        return t

    @staticmethod
    def _desired_version(s: Session, dev: Device) -> str | None:
        return s.scalar(select(Release.version).where(Release.id == dev.desired_release_id)) if dev.desired_release_id else None

    def pending(self, s: Session, dev: Device, now: dt.datetime | None = None) -> Decision | None:
        """The security update the device is to get, and where it stands at `now` (None: none pending)."""
        t = self._tenant(s, dev.tenant_id, dev.compatible, dev.id)
        if not t.releases:
            return None
        return t.decide(
            dev.compatible, dev.id, list(dev.groups or []), dev.os_version, self._desired_version(s, dev), now or self.clock()
        )

    def device_answer(self, tenant_id: int, device_id: int) -> dict[str, Any] | None:
        """What the device's state answer carries about its pending security update (nothing that changes with the
        clock alone, so a cached answer stays true): version, due date, postponement, when it installs."""
        with self.db.session() as s:
            dev = s.get(Device, device_id)
            if dev is None or dev.tenant_id != tenant_id:
                return None
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
            return _mark_json(m, rel, self._rollout(s, tid, rel.id))

    def unmark(self, who: Principal, release_id: int, rollouts: Any) -> None:
        """A release is no security update after all: its policy rollout is canceled, its postponements go. Audited."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            rel = tenant_release(s, tid, release_id)
            m = s.get(SecurityMark, rel.id)
            if m is None:
                raise NotFound(f"release {rel.version} is not marked a security update")
            r = self._rollout(s, tid, rel.id)
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
            return [_mark_json(m, rel, self._rollout(s, tid, rel.id)) for m, rel in rows]

    @staticmethod
    def _rollout(s: Session, tid: int, release_id: int) -> Rollout | None:
        q = select(Rollout).where(Rollout.tenant_id == tid, Rollout.release_id == release_id, Rollout.created_by == ROLLOUT_OWNER)
        return s.scalar(q)

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
            t = self._tenant(s, tid)
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
            t = self._tenant(s, tid, rel.compatible)
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
        r = self._rollout(s, tid, release_id)
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
        now = now or self.clock()
        with self.db.session() as s:
            tenants = list(s.scalars(select(SecurityMark.tenant_id).distinct()))
        placed: dict[str, int] = {}
        for tid in tenants:
            placed.update({f"{tid}:{k}": v for k, v in self.run_tenant(tid, now).items()})
        return placed

    def apply_now(self, who: Principal) -> dict[str, Any]:
        """Run the policy for the caller's tenant now instead of at the job's next minute (operators)."""
        who.require("operator")
        placed = self.run_tenant(who.require_tenant(), self.clock())
        return {"placed": sum(placed.values()), "rollouts": placed}

    def run_tenant(self, tid: int, now: dt.datetime) -> dict[str, int]:
        """Give every device of the tenant that is due its security release's action; returns rollout name -> devices."""
        out: dict[str, int] = {}
        touched: list[int] = []
        with self.db.session() as s:
            if s.get_bind().dialect.name == "sqlite":  # SQLite ignores FOR UPDATE: take its write lock first
                s.execute(update(Rollout).where(Rollout.id == -1).values(current_phase=Rollout.current_phase))
            t = self._tenant(s, tid)
            special = t.special()
            for compatible in sorted(t.releases):
                due = self._due(s, tid, compatible, t, special, now)
                for rel_id, cond in due.items():
                    n, rid = self._place(s, tid, rel_id, cond, now)
                    if rid is not None and n:
                        out[self._name(s, rid)] = n
                        touched.append(rid)
        for rid in touched:
            self.on_rollout(rid, now)
        return out

    @staticmethod
    def _name(s: Session, rid: int) -> str:
        return str(s.scalar(select(Rollout.name).where(Rollout.id == rid)))

    def _due(self, s: Session, tid: int, compatible: str, t: _Tenant, special: set[int], now: dt.datetime) -> dict[int, Any]:
        """Per security release, an SQL condition selecting the compatible's devices that are due for it."""
        groups_text = sql_cast(Device.groups, Text)
        base = [
            Device.tenant_id == tid,
            Device.compatible == compatible,
            Device.status == "active",
            Device.os_version.is_not(None),
        ]
        buckets = s.execute(
            select(groups_text, Device.os_version, Device.desired_release_id)
            .where(*base)
            .group_by(groups_text, Device.os_version, Device.desired_release_id)
        ).all()
        desired_ids = {d for _, _, d in buckets if d is not None}
        versions = (
            {i: v for i, v in s.execute(select(Release.id, Release.version).where(Release.id.in_(desired_ids)))}
            if desired_ids
            else {}
        )
        conds: dict[int, list[Any]] = {}
        for gtext, running, desired in buckets:
            groups = [str(g) for g in (json.loads(gtext) if gtext else []) or []]
            d = t.decide(compatible, None, groups, running, versions.get(desired) if desired else None, now)
            if d is None or d.state != "due":
                continue
            desired_cond = Device.desired_release_id.is_(None) if desired is None else Device.desired_release_id == desired
            bucket = and_(groups_text == gtext, Device.os_version == running, desired_cond)
            conds.setdefault(d.release.id, []).append(bucket)
        out: dict[int, Any] = {
            rel_id: and_(*base, or_(*parts), Device.id.not_in(special) if special else true()) for rel_id, parts in conds.items()
        }
        if special:
            rows = s.execute(
                select(Device.id, Device.groups, Device.os_version, Device.desired_release_id).where(
                    *base, Device.id.in_(special)
                )
            ).all()
            extra = {d for _, _, _, d in rows if d is not None} - set(versions)
            if extra:
                versions.update({i: v for i, v in s.execute(select(Release.id, Release.version).where(Release.id.in_(extra)))})
            mine: dict[int, list[int]] = {}
            for dev_id, groups, running, desired in rows:
                d = t.decide(compatible, dev_id, list(groups or []), running, versions.get(desired) if desired else None, now)
                if d is not None and d.state == "due":
                    mine.setdefault(d.release.id, []).append(dev_id)
            for rel_id, ids in mine.items():
                cond = and_(*base, Device.id.in_(ids))
                out[rel_id] = or_(out[rel_id], cond) if rel_id in out else cond
        return out

    def _place(self, s: Session, tid: int, rel_id: int, cond: Any, now: dt.datetime) -> tuple[int, int | None]:
        """The due devices that have no action of the release's policy rollout yet get one (one set difference, one
        bulk insert); the rollout is made on first use. A paused or canceled one is the operator's: left alone."""
        r = s.scalar(
            select(Rollout)
            .where(Rollout.tenant_id == tid, Rollout.release_id == rel_id, Rollout.created_by == ROLLOUT_OWNER)
            .with_for_update()
        )
        if r is None:
            r = self._new_rollout(s, tid, rel_id, now)
        if r.status not in ("running", "finished"):
            return 0, None
        # Placed already, or given the same release by one of the owner's rollouts that is still open.
        placed = select(Action.device_id).where(
            or_(Action.rollout_id == r.id, and_(Action.release_id == rel_id, Action.active.is_(True)))
        )
        ids = sorted(s.scalars(select(Device.id).where(cond).except_(placed)))
        if not ids:
            return 0, r.id
        insert_actions(s, r, [(i, 0) for i in ids], "a security update due by policy", now)
        mark_devices(s, tid, ids, now)
        if r.status == "finished" and rollout_may(r.status, RolloutStatus.RUNNING):
            r.status = RolloutStatus.RUNNING
        r.updated_at = now
        audit.record(
            s, Principal("system", "security-policy", tid), "security.install", r.name, release_id=rel_id, devices=len(ids)
        )
        return len(ids), r.id

    @staticmethod
    def _new_rollout(s: Session, tid: int, rel_id: int, now: dt.datetime) -> Rollout:
        rel = s.get(Release, rel_id)
        assert rel is not None
        name = f"security {rel.compatible} {rel.version}"[:128]
        if s.scalar(select(Rollout.id).where(Rollout.tenant_id == tid, Rollout.name == name)) is not None:
            name = f"security-release-{rel.id}"
        phases = parse_phases(None)
        phases[0]["name"] = "security update (by policy)"
        r = Rollout(
            tenant_id=tid,
            name=name,
            release_id=rel.id,
            app_id=None,
            target={"tags": [], "groups": [], "compatible": rel.compatible, "attributes": {}},
            phases=phases,
            action_type="soft",
            window=None,  # the devices' groups' maintenance windows apply
            start_at=None,
            requires_approval=False,
            status="running",
            current_phase=0,
            accepted_failures={},
            phases_started=1,  # open from the start: a device placed in it is offered its action at once
            created_by=ROLLOUT_OWNER,
            created_at=now,
            updated_at=now,
        )
        s.add(r)
        s.flush()
        audit.record(s, Principal("system", "security-policy", tid), "rollout.create", name, release=rel.version, type="soft")
        return r
