"""Rollouts: create, approve, pause, resume, cancel, retry; progression; what devices report about their actions.

The rules (targeting, phases, thresholds, windows) live in rollout_plan.py; this module applies them to
the database. `advance()` is idempotent and runs from the job queue (jobs.py) whenever an action changes,
at a rollout's scheduled start, and on a periodic sweep that also picks up devices that joined the target.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bulkhead.protocol import (
    AGENT_PHASE_ACTION,
    APP_PHASE_ACTION,
    ActionStatus,
    RolloutStatus,
    rollout_may,
)
from bulkhead.protocol import RolloutStatus as R

from ..db import Database
from ..errors import Conflict, Invalid, NotFound
from ..ids import as_id
from ..models import Action, App, Device, Rollout, utcnow
from . import audit
from .action_list import action_page, action_page_json
from .actions import record_status
from .auth import Principal
from .fleet_names import find_group
from .json_pages import JsonPage
from .keyset import Page, Paged, keyset, paged
from .rollout_checks import check_target, refuse_downgrades
from .rollout_counts import ProgressCounts
from .rollout_plan import (
    ACTION_TYPES,
    FAILED,
    TERMINAL,
    allocate_new,
    parse_phases,
    parse_target,
    parse_window,
    phase_verdict,
    rank_bounds,
)
from .rollout_sql import (
    TENANT_WIDE_AFTER,
    history_append,
    history_entry,
    insert_actions,
    insert_ranked,
    is_pg,
    latest,
    mark_devices,
    mark_tenant,
    matching_devices,
    offered,
)
from .rollout_subject import rollout_subject, subject_of
from .rollout_timeline import Timeline, timeline
from .security_plan import ROLLOUT_OWNER
from .times import parse_time

__all__ = ["RolloutService"]

log = logging.getLogger(__name__)

# Agent update phases and app phases -> action status: the shared table of bulkhead.protocol.
AGENT_PHASES = AGENT_PHASE_ACTION
APP_PHASES = APP_PHASE_ACTION


def _move(r: Rollout, status: RolloutStatus) -> None:
    """Set a rollout's status; the transition table says which moves exist (anything else is a bug here)."""
    if not rollout_may(r.status, status):
        raise RuntimeError(f"rollout {r.name}: {r.status} -> {status} is not an allowed transition")
    r.status = status


class RolloutService:
    def __init__(self, db: Database, on_change: Any = None) -> None:
        self.db = db
        # Called with a rollout id after a change that may let it progress (the job queue enqueues advance()).
        self._notify = on_change or (lambda _rid, _eta=None: None)
        self.progress = ProgressCounts()

    def on_change(self, rollout_id: int, eta: dt.datetime | None = None) -> None:
        """A committed change to the rollout (reports, DDI feedback, a scheduled start): its shared count is dropped
        and an evaluation asked for."""
        self.progress.forget(rollout_id)
        self._notify(rollout_id, eta)

    # -- reading ------------------------------------------------------------------------
    def _own(self, s: Session, who: Principal, ref: str, lock: bool = False) -> Rollout:
        """The caller's rollout; `lock` holds its row until the transaction ends (every change to a rollout and its
        actions takes it, as the evaluator does, so they never interleave)."""
        tid = who.require_tenant()
        q = select(Rollout).where(Rollout.tenant_id == tid)
        rid = as_id(ref)
        q = q.where(Rollout.id == rid) if rid is not None else q.where(Rollout.name == ref)
        r = s.scalar(q.with_for_update() if lock else q)
        if r is None:
            raise NotFound(f"rollout '{ref}' does not exist")
        return r

    def _json(self, s: Session, r: Rollout, fresh: bool = True) -> dict[str, Any]:
        """The rollout and its progress, counted by the database: devices per phase and status (each device's
        newest attempt) and bytes moved (every attempt). No action row is loaded. Reads (`fresh` False) share a
        count made within the last second (rollout_counts.py); answers to commands count afresh."""
        counts: dict[int, Counter[str]] = {}
        moved: Counter[int] = Counter()
        stamp = (r.status, r.current_phase, r.phases_started, r.updated_at)
        for phase, status, superseded, n, nbytes in self.progress.read(s, r.id, stamp, fresh):
            moved[phase] += nbytes
            if not superseded and phase < r.phases_started:  # a phase not yet open has no devices working on it
                counts.setdefault(phase, Counter())[status] += n
        per_phase: list[dict[str, Any]] = []
        total: Counter[str] = Counter()
        for i, p in enumerate(r.phases):
            c = counts.get(i, Counter())
            total.update(c)
            per_phase.append(
                {
                    **p,
                    "index": i,
                    "state": _phase_state(r, i),
                    "devices": sum(c.values()),
                    "counts": dict(c),
                    "bytes": moved[i],
                }
            )
        subject = subject_of(s, r)
        app = subject.app
        return {
            "id": r.id,
            "name": r.name,
            "subject": subject.words(),
            "release_id": r.release_id,
            "app": {"id": app.id, "name": app.name, "version": app.version} if app else None,
            **({"packages": r.packages} if r.packages is not None else {}),
            "target": r.target,
            "type": r.action_type,
            "window": r.window,
            "start_at": r.start_at.isoformat() if r.start_at else None,
            "requires_approval": r.requires_approval,
            "status": r.status,
            "current_phase": r.current_phase,
            "pause_reason": r.pause_reason,
            "phases": per_phase,
            "counts": dict(total),
            "devices": sum(total.values()),
            "created_by": r.created_by,
            "created_at": r.created_at.isoformat(),
        }

    def list_rollouts(self, who: Principal, page: Page) -> Paged[dict[str, Any]]:
        who.require("viewer")
        with self.db.read() as s:
            rows = list(s.scalars(keyset(select(Rollout).where(Rollout.tenant_id == who.require_tenant()), [Rollout.id], page)))
            return paged(rows, page, lambda r: (r.id,), lambda r: self._json(s, r, fresh=False))

    def show(self, who: Principal, ref: str) -> dict[str, Any]:
        who.require("viewer")
        with self.db.read() as s:
            return self._json(s, self._own(s, who, ref), fresh=False)

    def timeline(self, who: Principal, ref: str) -> Timeline:
        """Devices succeeded, failed and canceled over time (rollout_timeline.py)."""
        who.require("viewer")
        with self.db.read() as s:
            return timeline(s, self._own(s, who, ref), utcnow())

    def actions(self, who: Principal, ref: str, status: str | None, page: Page) -> Paged[dict[str, Any]]:
        """One page of the rollout's actions by id, with each device's name (not its row: no inventories)."""
        who.require("viewer")
        with self.db.read() as s:
            return action_page(s, self._own(s, who, ref).id, status, page)

    def actions_json(self, who: Principal, ref: str, status: str | None, page: Page) -> JsonPage:
        """`actions` as the API sends it: the page's JSON array (written by PostgreSQL there)."""
        who.require("viewer")
        with self.db.read() as s:
            return action_page_json(s, self._own(s, who, ref).id, status, page)

    # -- operator commands --------------------------------------------------------------
    def create(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        who.require("operator")
        tid = who.require_tenant()
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise Invalid("a rollout needs a name of 1-128 characters")
        action_type = body.get("type") or "soft"
        if action_type not in ACTION_TYPES:
            raise Invalid(f"type must be one of {', '.join(ACTION_TYPES)}")
        target = parse_target(body.get("target") or {})
        phases = parse_phases(body.get("phases"))
        window = parse_window(body.get("window"))
        start_at = parse_time(body["start_at"], "start_at") if body.get("start_at") is not None else None
        allow_empty, allow_downgrade = bool(body.get("allow_empty")), bool(body.get("allow_downgrade"))
        with self.db.session() as s:
            subject = rollout_subject(s, tid, body, target, action_type)
            rel, app = subject.release, subject.app
            count, devices = check_target(s, tid, target, phases, allow_empty)
            if not allow_downgrade and count:
                refuse_downgrades(s, tid, subject, target)
            if s.scalar(select(Rollout).where(Rollout.tenant_id == tid, Rollout.name == name)) is not None:
                raise Conflict(f"a rollout named '{name}' already exists")
            now = utcnow()
            requires_approval = bool(body.get("requires_approval"))
            status = "waiting_approval" if requires_approval else ("scheduled" if start_at and start_at > now else "running")
            r = Rollout(
                tenant_id=tid,
                name=name,
                release_id=rel.id if rel else None,
                app_id=app.id if app else None,
                packages=subject.packages,
                target=target,
                phases=phases,
                action_type=action_type,
                window=window,
                start_at=start_at,
                requires_approval=requires_approval,
                status=status,
                current_phase=0,
                accepted_failures={},
                phases_started=0,
                created_by=f"{who.kind}:{who.name}",
            )
            s.add(r)
            s.flush()
            # Every matching device gets its action now; devices see it when its phase opens.
            self._place_target(s, r, count, devices, now)
            audit.record(s, who, "rollout.create", name, **subject.audit(), type=action_type, status=status)
            if status == "running":
                self._advance(s, r, now, joiners=False, leavers=False)  # every matching device was placed just now
            out = self._json(s, r)
        if status == "scheduled" and start_at is not None:
            self.on_change(out["id"], start_at)
        return out

    def approve(self, who: Principal, ref: str) -> dict[str, Any]:
        who.require("admin")
        with self.db.session() as s:
            r = self._own(s, who, ref, lock=True)
            if r.status != "waiting_approval":
                raise Conflict(f"rollout '{r.name}' is {r.status}, not waiting for approval")
            now = utcnow()
            _move(r, R.SCHEDULED if r.start_at and r.start_at > now else R.RUNNING)
            audit.record(s, who, "rollout.approve", r.name)
            if r.status == "running":
                self._advance(s, r, now)
            out = self._json(s, r)
        if out["status"] == "scheduled":
            self.on_change(out["id"], dt.datetime.fromisoformat(out["start_at"]))
        return out

    def pause(self, who: Principal, ref: str) -> dict[str, Any]:
        who.require("operator")
        with self.db.session() as s:
            r = self._own(s, who, ref, lock=True)
            if r.status not in ("running", "scheduled"):
                raise Conflict(f"rollout '{r.name}' is {r.status}; only a running or scheduled rollout can be paused")
            _move(r, R.PAUSED)
            r.pause_reason, r.updated_at = f"paused by {who.name}", utcnow()
            audit.record(s, who, "rollout.pause", r.name)
            return self._json(s, r)

    def resume(self, who: Principal, ref: str) -> dict[str, Any]:
        """Go on after a pause; failures seen so far in the current phase count as accepted."""
        who.require("operator")
        with self.db.session() as s:
            r = self._own(s, who, ref, lock=True)
            if r.status != "paused":
                raise Conflict(f"rollout '{r.name}' is {r.status}, not paused")
            failed = int(
                s.scalar(
                    select(func.count())
                    .select_from(Action)
                    .where(latest(r.id), Action.phase == r.current_phase, Action.status.in_(FAILED))
                )
                or 0
            )
            r.accepted_failures = {**r.accepted_failures, str(r.current_phase): failed}
            _move(r, R.RUNNING)
            r.pause_reason, r.updated_at = None, utcnow()
            audit.record(s, who, "rollout.resume", r.name, accepted_failures=failed)
            self._advance(s, r, utcnow())
            return self._json(s, r)

    def cancel(self, who: Principal, ref: str) -> dict[str, Any]:
        """Stop the rollout. Actions no device has started are canceled; started ones are asked to cancel."""
        who.require("operator")
        with self.db.session() as s:
            r = self._own(s, who, ref, lock=True)
            if r.status in ("finished", "canceled"):
                raise Conflict(f"rollout '{r.name}' is already {r.status}")
            _move(r, R.CANCELED)
            now = r.updated_at = utcnow()
            self._cancel_actions(s, r, now)
            audit.record(s, who, "rollout.cancel", r.name)
            return self._json(s, r)

    def retry(self, who: Principal, ref: str) -> dict[str, Any]:
        """Give failed and rolled-back devices a new action (a new attempt for the agent and DDI clients)."""
        who.require("operator")
        with self.db.session() as s:
            r = self._own(s, who, ref, lock=True)
            if r.status in ("canceled", "waiting_approval"):
                raise Conflict(f"rollout '{r.name}' is {r.status}; failed devices cannot be retried")
            now = utcnow()
            # Each device's failed newest attempt is superseded by a new one: two statements for any number.
            failed = s.execute(
                update(Action)
                .where(latest(r.id), Action.status.in_(FAILED))
                .values(superseded=True)
                .returning(Action.device_id, Action.phase)
                .execution_options(synchronize_session=False)
            ).all()
            placed = sorted((device_id, phase) for device_id, phase in failed)
            if placed:
                insert_actions(s, r, placed, "retry of a failed attempt", now)
                mark_devices(s, r.tenant_id, [d for d, _ in placed], now)
            retried = len(placed)
            if r.status == "finished" and retried:
                _move(r, R.RUNNING)
            r.accepted_failures = {}
            audit.record(s, who, "rollout.retry", r.name, devices=retried)
            out = self._json(s, r)
            out["retried"] = retried
            return out

    def delete(self, who: Principal, ref: str) -> None:
        who.require("admin")
        with self.db.session() as s:
            r = self._own(s, who, ref, lock=True)
            if r.status in ("running", "paused", "scheduled") and s.scalar(
                select(Action.id)
                .where(Action.rollout_id == r.id, Action.active.is_(True), Action.phase < r.phases_started)
                .limit(1)
            ):
                raise Conflict(f"rollout '{r.name}' still has open actions; cancel it first")
            audit.record(s, who, "rollout.delete", r.name)
            s.delete(r)

    def set_group_window(self, who: Principal, name: str, raw: Any) -> dict[str, Any]:
        who.require("operator")
        window = parse_window(raw)
        tid = who.require_tenant()
        with self.db.session() as s:
            g = find_group(s, tid, name)
            g.window = window
            audit.record(s, who, "group.window", name, window=window)
            return {"group": name, "window": window}

    # -- progression --------------------------------------------------------------------
    def advance(self, rollout_id: int | None = None, now: dt.datetime | None = None, joiners: bool = False) -> None:
        """Move one rollout (or every scheduled and running one) as far as its rules allow. Safe to run concurrently.

        Every rollout (`rollout_id` None, the periodic sweep) also looks for devices that joined its target; one
        rollout (`rollout_id`, after its devices reported) only counts its current phase, unless `joiners`.
        Finished and canceled rollouts cost nothing: they are not selected, except by `joiners` (a device joined
        the fleet or changed its tags or groups), when a finished rollout takes in the devices that match its
        target now, and by `rollout_id`."""
        now = now or utcnow()
        with self.db.session() as s:
            if s.get_bind().dialect.name == "sqlite":
                # SQLite ignores FOR UPDATE: take its write lock before reading, so that two advances at once
                # (a device joined while the sweep runs) do not both give a device its action.
                s.execute(update(Rollout).where(Rollout.id == -1).values(current_phase=Rollout.current_phase))
            wanted = ("scheduled", "running", "finished") if joiners or rollout_id is not None else ("scheduled", "running")
            q = select(Rollout).where(Rollout.status.in_(wanted))
            if rollout_id is not None:
                q = q.where(Rollout.id == rollout_id)
            search = joiners or rollout_id is None
            # The sweep skips a rollout being evaluated elsewhere; one rollout's evaluation (asked for after a change)
            # waits for it instead and then reads that change: skipped, it would wait for the next minute's sweep.
            evaluated = []
            for r in s.scalars(q.order_by(Rollout.id).with_for_update(skip_locked=rollout_id is None)):
                self._advance(s, r, now, joiners=search)
                evaluated.append(r.id)
        for rid in evaluated:  # committed: reads count again
            self.progress.forget(rid)

    def _place(self, s: Session, r: Rollout, plan: dict[int, int], now: dt.datetime) -> int:
        """Give devices new to the rollout their action in their phase: one bulk insert per phase. An action of a
        phase not yet open is not offered (see `offered`); one of an open phase is, at once."""
        by_phase: dict[int, list[tuple[int, int]]] = {}
        for d, ph in sorted(plan.items()):
            by_phase.setdefault(ph, []).append((d, ph))
        for ph, pairs in sorted(by_phase.items()):
            if ph < r.phases_started:
                insert_actions(s, r, pairs, "joined the target of a running rollout", now)
                mark_devices(s, r.tenant_id, [d for d, _ in pairs], now)
            else:
                insert_actions(s, r, pairs, f"phase {ph + 1} ('{r.phases[ph]['name']}')", now)
        return len(plan)

    def _place_target(
        self, s: Session, r: Rollout, count: int, devices: dict[int, Sequence[str]] | None, now: dt.datetime
    ) -> int:
        """A new rollout's first placement of the `count` devices its target matched. On PostgreSQL without group
        phases (`devices` None) one INSERT ... SELECT ranks and places them all; otherwise `allocate_new` places the
        devices read here (or by check_target), one bulk insert per phase."""
        if devices is None and is_pg(s):
            return insert_ranked(s, r, rank_bounds(r.phases, count), now)
        if devices is None:
            devices = dict.fromkeys(s.scalars(matching_devices(s, r.tenant_id, r.target, False).order_by(Device.id)), ())
        return self._place(s, r, allocate_new(r.phases, r.id, devices, {}), now)

    def _joiners(self, s: Session, r: Rollout, now: dt.datetime) -> int:
        """Place the devices that match the target but have no action yet (joined later): one set difference."""
        if r.created_by == ROLLOUT_OWNER:
            return 0  # a security update's rollout: the policy places its devices (services/security.py), not a target
        placed = select(Action.device_id).where(Action.rollout_id == r.id)
        # EXCEPT: a hashed set difference, linear whatever the planner knows of a rollout created a moment ago.
        ids = list(s.scalars(matching_devices(s, r.tenant_id, r.target, False).except_(placed)))
        if not ids:
            return 0
        new: dict[int, list[str]] = {i: [] for i in ids}
        if any(p.get("group") for p in r.phases):
            new = {i: list(g or []) for i, g in s.execute(select(Device.id, Device.groups).where(Device.id.in_(ids)))}
        per_phase = select(Action.phase, func.count()).where(latest(r.id)).group_by(Action.phase)
        held = {ph: n for ph, n in s.execute(per_phase)}
        return self._place(s, r, allocate_new(r.phases, r.id, new, held), now)

    def _open_phases(self, s: Session, r: Rollout, now: dt.datetime, leavers: bool = True) -> None:
        """Open every phase up to the current one: its devices' actions (made when they were placed) are offered
        from now on. A row of the rollout, whatever the phase's size; devices that left the target (or were
        disabled) since they were placed lose their action of the phase first, as if never placed."""
        while r.phases_started <= r.current_phase:
            i = r.phases_started
            in_phase = select(Action.device_id).where(latest(r.id), Action.phase == i, Action.status == "scheduled")
            left = list(s.scalars(in_phase.except_(matching_devices(s, r.tenant_id, r.target, False)))) if leavers else []
            if left:
                s.execute(
                    delete(Action)
                    .where(latest(r.id), Action.phase == i, Action.status == "scheduled", Action.device_id.in_(left))
                    .execution_options(synchronize_session=False)
                )
            r.phases_started = i + 1
            few = list(s.scalars(in_phase.where(Action.active.is_(True)).limit(TENANT_WIDE_AFTER + 1)))
            if len(few) > TENANT_WIDE_AFTER:
                mark_tenant(s, r.tenant_id, now)
            else:
                mark_devices(s, r.tenant_id, few, now)

    def _phase_counts(self, s: Session, r: Rollout) -> Counter[str]:
        """The current phase's devices per status as thresholds count them (the database counts on its index)."""
        q = (
            select(Action.status, Action.active, func.count())
            .where(latest(r.id), Action.phase == r.current_phase)
            .group_by(Action.status, Action.active)
        )
        counts: Counter[str] = Counter()
        for status, active, n in s.execute(q):
            counts[_counted(status, active)] += n
        return counts

    def _advance(self, s: Session, r: Rollout, now: dt.datetime, joiners: bool = True, leavers: bool = True) -> None:
        """One evaluation step. `joiners`: look for devices that joined the target; `leavers`: a phase that opens
        drops the devices that left it (both scan the fleet once: skipped where nothing can have changed)."""
        if r.status == "scheduled":
            if r.start_at and r.start_at > now:
                if r.start_at - now < dt.timedelta(seconds=5):
                    self.on_change(r.id, r.start_at)  # woken a moment early: try again at the start
                return
            _move(r, R.RUNNING)
            audit.record(s, _scheduler(r), "rollout.start", r.name)
            joiners = True  # devices that joined the target since the rollout was created
        if r.status not in ("running", "finished"):
            return
        joined = self._joiners(s, r, now) if joiners else 0
        if r.status == "finished":
            if not joined:
                return
            _move(r, R.RUNNING)  # late joiners: the rollout is open again until they are done
        while True:
            self._open_phases(s, r, now, leavers=leavers)
            later = int(
                s.scalar(select(func.count()).select_from(Action).where(latest(r.id), Action.phase > r.current_phase)) or 0
            )
            verdict, why = phase_verdict(
                r.phases[r.current_phase],
                self._phase_counts(s, r),
                int(r.accepted_failures.get(str(r.current_phase), 0)),
                later_devices=later,
                empty_accepted=str(r.current_phase) in r.accepted_failures,
            )
            if verdict == "pause":
                _move(r, R.PAUSED)
                r.pause_reason, r.updated_at = why, now
                audit.record(s, _scheduler(r), "rollout.pause", r.name, reason=why)
                return
            if verdict == "wait":
                return
            if not joiners:  # before it moves on, no device of the target may be left without its place
                joiners = True
                if self._joiners(s, r, now):
                    continue
            if r.current_phase + 1 < len(r.phases):
                r.current_phase += 1
                r.updated_at = now
                audit.record(s, _scheduler(r), "rollout.phase", r.name, phase=r.current_phase, why=why)
                continue
            still_open = s.scalar(select(Action.id).where(Action.rollout_id == r.id, Action.active.is_(True)).limit(1))
            if still_open is None:
                _move(r, R.FINISHED)
                r.updated_at = now
                audit.record(s, _scheduler(r), "rollout.finish", r.name)
            return

    def _cancel_actions(self, s: Session, r: Rollout, now: dt.datetime) -> None:
        """The cancel of every open action, in three UPDATEs whatever the rollout's size: an app or package action
        and one no device has started close at once; a started OS update asks its device to confirm (`canceling`)."""
        open_ = [Action.rollout_id == r.id, Action.active.is_(True)]
        steps: list[tuple[list[Any], str, str, dict[str, Any]]] = [
            (
                [Action.release_id.is_(None)],
                "canceled",
                "rollout canceled: the device keeps its own desired version",
                {"active": False, "closed_at": now},
            ),
            (
                [Action.release_id.is_not(None), Action.status == "scheduled"],
                "canceled",
                "rollout canceled before the device started",
                {"active": False, "closed_at": now},
            ),
            (
                [Action.release_id.is_not(None), Action.status.not_in(("scheduled", "canceling"))],
                "canceling",
                "rollout canceled: waiting for the device to confirm",
                {"status_before_cancel": Action.status},
            ),
        ]
        changed: list[int] = []
        for where, status, message, extra in steps:
            stmt = (
                update(Action)
                .where(*open_, *where)
                .values(
                    status=status,
                    history=history_append(s, history_entry(status, message, now)),
                    updated_at=now,
                    **extra,
                )
                .returning(Action.device_id)
                .execution_options(synchronize_session=False)
            )
            changed += s.scalars(stmt).all()
        mark_devices(s, r.tenant_id, changed, now)

    # -- what devices report ------------------------------------------------------------
    def on_agent_event(self, s: Session, dev: Device, phase: str, release_id: int | None, message: str | None) -> int | None:
        """Map an agent's update event onto its open action for that release; returns the rollout id if it changed."""
        status = AGENT_PHASES.get(phase)
        if status is None or release_id is None:
            return None
        a = s.scalar(
            select(Action)
            .where(Action.device_id == dev.id, Action.release_id == release_id, Action.active.is_(True), offered())
            .order_by(Action.id)
            .with_for_update(of=Action)
        )
        if a is None:
            return None
        if a.status == ActionStatus.CANCELING and status not in TERMINAL:
            return None
        if status == a.status:
            return None
        record_status(a, status, message, source="device")
        self.progress.forget(a.rollout_id)  # and again by on_change once committed
        return a.rollout_id

    def on_package_event(self, s: Session, dev: Device, phase: str, details: dict[str, Any]) -> int | None:
        """Map an agent's package event (applied, failure) onto the package action it names (details["action"])."""
        status = APP_PHASES.get(phase)
        action_id = details.get("action")
        if status is None or status == "downloaded" or isinstance(action_id, bool) or not isinstance(action_id, int):
            return None
        a = s.scalar(
            select(Action)
            .where(
                Action.id == action_id,
                Action.device_id == dev.id,
                Action.active.is_(True),
                Action.release_id.is_(None),
                Action.app_id.is_(None),
                offered(),
            )
            .with_for_update(of=Action)
        )
        if a is None or status == a.status:
            return None
        error = details.get("error")
        record_status(a, status, str(error)[:2000] if error else f"packages: {phase}", source="device")
        self.progress.forget(a.rollout_id)  # and again by on_change once committed
        return a.rollout_id

    def on_app_event(self, s: Session, dev: Device, phase: str, details: dict[str, Any]) -> int | None:
        """Map an agent's app event (applied, failure, downloaded) onto the open action for that app version."""
        status = APP_PHASES.get(phase)
        name, version = details.get("app"), details.get("version")
        if status is None or not isinstance(name, str) or not isinstance(version, str):
            return None
        a = s.scalar(
            select(Action)
            .join(App, App.id == Action.app_id)
            .where(Action.device_id == dev.id, Action.active.is_(True), App.name == name, App.version == version, offered())
            .order_by(Action.id)
            .with_for_update(of=Action)
        )
        if a is None or status == a.status:
            return None
        error = details.get("error")
        record_status(a, status, str(error) if error else f"app {name} {version}: {phase}", source="device")
        self.progress.forget(a.rollout_id)  # and again by on_change once committed
        return a.rollout_id


def _phase_state(r: Rollout, i: int) -> str:
    """done, running, paused, waiting, finished or canceled: where phase `i` stands in the rollout."""
    if r.status == "finished":
        return "finished"
    if i < r.current_phase:
        return "done"
    if r.status == "canceled":
        return "canceled"
    if i > r.current_phase or r.status in ("waiting_approval", "scheduled"):
        return "waiting"
    return "paused" if r.status == "paused" else "running"


def _scheduler(r: Rollout) -> Principal:
    return Principal("system", "scheduler", r.tenant_id)


def _counted(status: str, active: bool) -> str:
    """How an action counts for thresholds: a closed download-only action is a success."""
    return "success" if status == "downloaded" and not active else status
