"""The state-change feed: which devices' poll answers may have changed, known to every server process.

A change is recorded in the same transaction as the rows that cause it (a `state_changes` row), marked at
once in the process that committed it, and marked in every other process when its poller reads the row.
A cached answer is valid while nothing it depends on was marked after the answer was computed: marks are
taken *after* commit (locally) or after the row became visible (remotely), so an answer computed from data
older than a change is always dropped.

Row ids come from one sequence, so a reader keeps a watermark: every id up to it was applied. An id above it that is
missing is a transaction still open (its insert was flushed, not yet committed) or rolled back; it is waited for a
few seconds, then the watermark moves past it, but the id is still read for a while ("late"): a long transaction on
another host (a large rollout step, a big batch of reports) commits its change after the watermark passed, and
every other host must still see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

from sqlalchemy import delete, event, func, insert, inspect, select
from sqlalchemy.orm import Session

from .command_models import DeviceCommand
from .db import Database
from .models import Action, App, Device, DeviceGroup, Release, Rollout, StateChange, Tenant, utcnow
from .tunnel_models import TunnelConnection

__all__ = ["ChangeFeed"]

log = logging.getLogger(__name__)

# Device columns no poll answer depends on (written by reports and the aggregate counters).
_QUIET_DEVICE = frozenset({"last_seen", "bytes_served", "inventory", "update_status"})
# Rollout columns that reach devices only through their actions (which are marked themselves).
_QUIET_ROLLOUT = frozenset({"status", "current_phase", "pause_reason", "accepted_failures", "updated_at"})
_TENANT_WIDE = (DeviceGroup, Release, App)
_GAP_SECONDS = 10.0  # a missing id this old no longer holds the watermark back (it is read as late)
_KEEP = dt.timedelta(hours=1)
_LATE_READ = 1000  # late ids read per poll (the oldest first)
_LATE_KEPT = 10_000  # at most this many late ids watched (a storm of rolled-back inserts must not grow it forever)

Change = tuple[int | None, int | None]  # (tenant_id, device_id or None for the whole tenant)


def _changed(obj: Any, quiet: frozenset[str]) -> bool:
    state = inspect(obj)
    return any(attr.history.has_changes() for attr in state.attrs if attr.key not in quiet)


def _change_of(obj: Any, deleted: bool) -> Change | None:
    if isinstance(obj, Device):
        return (obj.tenant_id, obj.id) if deleted or _changed(obj, _QUIET_DEVICE) else None
    if isinstance(obj, Action | DeviceCommand):  # a command pending or no longer: in the device's answer or not
        return (obj.tenant_id, obj.device_id)
    if isinstance(obj, TunnelConnection) and not deleted:  # a remote session's connection: announced to the device
        return (obj.tenant_id, obj.device_id)
    if isinstance(obj, Rollout):
        return (obj.tenant_id, None) if deleted or _changed(obj, _QUIET_ROLLOUT) else None
    if isinstance(obj, Tenant):
        return (obj.id, None)
    if isinstance(obj, _TENANT_WIDE):
        return (obj.tenant_id, None)
    return None


class ChangeFeed:
    def __init__(self, db: Database, interval: float = 0.5) -> None:
        self.db, self.interval = db, interval
        self._device: dict[int, float] = {}
        self._tenant: dict[int, float] = {}
        self._fleet: dict[int, float] = {}  # tenant -> when any of its devices was last marked
        self._low = 0  # every id up to here has been applied
        self._ids: set[int] = set()  # applied ids above _low
        self._gap_since: float | None = None
        self._late: dict[int, float] = {}  # ids below _low skipped as holes, still read: id -> when skipped
        self._healthy_until = float("inf")  # until the poller runs, only this process writes
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[list[int]], None]] = []

    def listen(self, devices_changed: Callable[[list[int]], None]) -> None:
        """Call `devices_changed` with the ids of the devices marked, as they are marked (in this process after its
        commit, for others when the poller reads them): it must be quick and may be called from any thread."""
        self._listeners.append(devices_changed)

    # -- reading ----------------------------------------------------------------------
    def valid(self, tenant_id: int | None, device_id: int, since: float) -> bool:
        """Whether an answer for this device computed at `since` (monotonic) is still current."""
        if time.monotonic() > self._healthy_until:
            return False  # the feed is not being read: trust nothing cached
        return self._device.get(device_id, -1.0) < since and self._tenant.get(tenant_id or 0, -1.0) < since

    def fleet_valid(self, tenant_id: int, since: float) -> bool:
        """Whether an answer about the tenant's whole fleet computed at `since` (device counts per group) is still
        current: neither the tenant nor any of its devices was marked after it."""
        if time.monotonic() > self._healthy_until:
            return False
        return self._fleet.get(tenant_id, -1.0) < since and self._tenant.get(tenant_id, -1.0) < since

    def mark(self, changes: Iterable[Change]) -> None:
        now = time.monotonic()
        devices: list[int] = []
        for tenant_id, device_id in changes:
            if device_id is None:
                self._tenant[tenant_id or 0] = now
            else:
                self._device[device_id] = now
                self._fleet[tenant_id or 0] = now
                devices.append(device_id)
        if devices:
            for listener in self._listeners:
                listener(devices)

    # -- writing: SQLAlchemy session events -------------------------------------------
    def install(self) -> None:
        factory = self.db.factory
        event.listen(factory, "after_flush", self._after_flush)
        event.listen(factory, "after_commit", self._after_commit)
        event.listen(factory, "after_rollback", self._after_rollback)

    def _after_flush(self, session: Session, _ctx: Any) -> None:
        found: set[Change] = set()
        for obj in chain(session.new, session.dirty):
            if (c := _change_of(obj, deleted=False)) is not None:
                found.add(c)
        for obj in session.deleted:
            if (c := _change_of(obj, deleted=True)) is not None:
                found.add(c)
        pending: set[Change] = session.info.setdefault("state_changes", set())
        fresh = found - pending
        if fresh:
            now = utcnow()
            session.connection().execute(insert(StateChange), [{"tenant_id": t, "device_id": d, "at": now} for t, d in fresh])
            pending |= fresh

    def _after_commit(self, session: Session) -> None:
        changes = session.info.pop("state_changes", None)
        if changes:
            self.mark(changes)

    def _after_rollback(self, session: Session) -> None:
        session.info.pop("state_changes", None)

    # -- the poller: rows other processes wrote ---------------------------------------
    def _read(self) -> list[tuple[int, int | None, int | None]]:
        with self.db.session() as s:
            cols = (StateChange.id, StateChange.tenant_id, StateChange.device_id)
            q = select(*cols).where(StateChange.id > self._low)
            rows = [(r[0], r[1], r[2]) for r in s.execute(q.order_by(StateChange.id).limit(10_000))]
            if self._late:
                late = list(self._late)[:_LATE_READ]
                rows += [(r[0], r[1], r[2]) for r in s.execute(select(*cols).where(StateChange.id.in_(late)))]
            return rows

    def apply(self, rows: list[tuple[int, int | None, int | None]]) -> None:
        now = time.monotonic()
        fresh = [(i, t, d) for i, t, d in rows if i not in self._ids and (i > self._low or i in self._late)]
        self.mark((t, d) for _, t, d in fresh)
        for i, _, _ in fresh:
            if i > self._low:
                self._ids.add(i)
            else:
                self._late.pop(i, None)  # a late commit: seen now, marked above
        while self._ids:
            nxt = self._low + 1
            if nxt in self._ids:
                self._ids.discard(nxt)
                self._low, self._gap_since = nxt, None
            elif self._gap_since is None:
                self._gap_since = now  # an insert not yet committed, or rolled back
                break
            elif now - self._gap_since > _GAP_SECONDS:
                self._low, self._gap_since = nxt, None
                self._late[nxt] = now  # rolled back, or a long transaction that commits later: still read
                if len(self._late) > _LATE_KEPT:
                    del self._late[next(iter(self._late))]
            else:
                break

    def prune(self) -> None:
        """Forget old marks (no cached answer lives that long) and old rows."""
        cutoff = time.monotonic() - _KEEP.total_seconds()
        for marks in (self._device, self._tenant, self._fleet):
            for k in [k for k, at in marks.items() if at < cutoff]:
                del marks[k]
        for i in [i for i, at in self._late.items() if at < cutoff]:  # its row, if any, is pruned below
            del self._late[i]
        with self.db.session() as s:
            s.execute(delete(StateChange).where(StateChange.at < utcnow() - _KEEP))

    async def _run(self) -> None:
        last_prune = time.monotonic()
        while True:
            try:
                rows = await asyncio.to_thread(self._read)
                self.apply(rows)
                self._healthy_until = time.monotonic() + max(5.0, 10 * self.interval)
                if time.monotonic() - last_prune > 60:
                    last_prune = time.monotonic()
                    await asyncio.to_thread(self.prune)
            except Exception:
                log.exception("could not read the state-change feed; cached poll answers are not used until it works")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        with self.db.session() as s:
            self._low = int(s.scalar(select(func.coalesce(func.max(StateChange.id), 0))) or 0)
        self._healthy_until = time.monotonic() + max(5.0, 10 * self.interval)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
