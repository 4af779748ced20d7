"""The security-update job: the devices that are due get their security release, set-based.

Per compatible it reads the fleet in buckets of devices that share what the decision depends on (their groups, OS
version and own desired release: one GROUP BY), decides once per bucket with the pure security_plan.py, and gives the
due devices an action in the release's rollout, which the policy makes on first use (`ROLLOUT_OWNER`): progress,
thresholds, maintenance windows, reporting and the agent's and DDI clients' paths are the rollouts'. Devices with a
policy or postponement of their own (set one by one by people) are decided one by one.
See docs/adr/0006-security-updates-by-policy.md.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Text, and_, or_, select, true, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from bulkhead.protocol import RolloutStatus, rollout_may

from ..db import Database
from ..models import Action, Device, Release, Rollout
from ..security_models import SecurityMark
from . import audit
from .auth import Principal
from .rollout_plan import parse_phases
from .rollout_sql import insert_actions, mark_devices
from .security_plan import ROLLOUT_OWNER
from .security_rows import TenantView, load_view

__all__ = ["SecurityJob"]


class SecurityJob:
    def __init__(self, db: Database, window_days: int, on_rollout: Callable[[int, dt.datetime], object]) -> None:
        self.db, self.window_days = db, window_days
        # Called after a policy rollout got new devices (the rollout service evaluates it).
        self.on_rollout = on_rollout

    def run(self, now: dt.datetime) -> dict[str, int]:
        """Every tenant with security releases: devices that are due get the update (the periodic job)."""
        with self.db.session() as s:
            tenants = list(s.scalars(select(SecurityMark.tenant_id).distinct()))
        placed: dict[str, int] = {}
        for tid in tenants:
            placed.update({f"{tid}:{k}": v for k, v in self.run_tenant(tid, now).items()})
        return placed

    def run_tenant(self, tid: int, now: dt.datetime) -> dict[str, int]:
        """Give every device of the tenant that is due its security release's action; returns rollout name -> devices."""
        out: dict[str, int] = {}
        touched: list[int] = []
        with self.db.session() as s:
            if s.get_bind().dialect.name == "sqlite":  # SQLite ignores FOR UPDATE: take its write lock first
                s.execute(update(Rollout).where(Rollout.id == -1).values(current_phase=Rollout.current_phase))
            t = load_view(s, tid, self.window_days)
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

    def _due(self, s: Session, tid: int, compatible: str, t: TenantView, special: set[int], now: dt.datetime) -> dict[int, Any]:
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
