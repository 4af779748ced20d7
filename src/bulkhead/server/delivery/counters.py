"""Bytes served and last-seen times per device, gathered in memory and flushed in aggregate (no DB write per poll)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from ..asgi import Receive
from ..background import cancel
from ..db import Database
from ..models import Action, Device
from ..services.rollout_sql import offered

__all__ = ["ByteCounter", "Transfer", "add_bytes"]

log = logging.getLogger(__name__)


class Transfer:
    """One response's artifact bytes as the HTTP server took them, and whether the client has gone.

    A client that aborts a download is counted for what was sent before it left (plus what the server and the
    kernel had buffered), not for the whole file.
    """

    __slots__ = ("gone", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.gone = False

    async def watch(self, receive: Receive) -> None:
        """Run beside the response: marks `gone` when the server reports the client's disconnect."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                return


def add_bytes(s: Session, pending: Mapping[int, int], interval: float) -> None:
    """Add bytes sent to each device's total, and to the rollout action it is working on (or just finished: the
    sums lag by up to `interval` seconds), for per-action progress. Only an offered action: a later phase's waiting
    action is newer but downloads nothing yet."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=max(60.0, 3 * interval))
    for device_id, n in sorted(pending.items()):
        s.execute(update(Device).where(Device.id == device_id).values(bytes_served=Device.bytes_served + n))
        latest = select(func.max(Action.id)).where(Action.device_id == device_id, offered()).scalar_subquery()
        s.execute(
            update(Action)
            .where(Action.id == latest, or_(Action.active.is_(True), Action.updated_at > cutoff))
            .values(bytes_done=func.coalesce(Action.bytes_done, 0) + n)
        )


class ByteCounter:
    def __init__(self, db: Database, interval: float) -> None:
        self.db = db
        self.interval = interval
        self._pending: defaultdict[int, int] = defaultdict(int)
        self._seen: dict[int, dt.datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, device_id: int, nbytes: int) -> None:
        self._pending[device_id] += nbytes

    def seen(self, device_id: int) -> None:
        """A device polled: its last_seen is written with the next flush, not on the poll's path."""
        self._seen[device_id] = dt.datetime.now(dt.UTC)

    def _take(self) -> tuple[dict[int, int], dict[int, dt.datetime]]:
        """Swap out what was gathered so far (on the event loop, where `add` and `seen` run)."""
        pending, self._pending = self._pending, defaultdict(int)
        seen, self._seen = self._seen, {}
        return pending, seen

    def _restore(self, taken: tuple[dict[int, int], dict[int, dt.datetime]]) -> None:
        for device_id, n in taken[0].items():
            self._pending[device_id] += n
        for device_id, at in taken[1].items():
            self._seen.setdefault(device_id, at)

    def _write(self, taken: tuple[dict[int, int], dict[int, dt.datetime]]) -> bool:
        """Write one transaction of increments and times; False (and logged) when the database refused."""
        pending, seen = taken
        try:
            with self.db.session() as s:
                add_bytes(s, pending, self.interval)
                if seen:
                    # A Core executemany: a device deleted since it polled matches no row and is skipped (the ORM's
                    # bulk update by primary key would fail the whole flush, and every later one, on it).
                    devices = cast(Table, Device.__table__)
                    s.execute(
                        update(devices).where(devices.c.id == bindparam("device_id")).values(last_seen=bindparam("at")),
                        [{"device_id": k, "at": v} for k, v in sorted(seen.items())],
                    )
        except Exception:
            log.exception("could not flush byte counters; keeping them for the next try")
            return False
        return True

    def flush(self) -> None:
        """Write the sums gathered since the last flush (synchronously; used at shutdown)."""
        taken = self._take()
        if (taken[0] or taken[1]) and not self._write(taken):
            self._restore(taken)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            taken = self._take()
            if (taken[0] or taken[1]) and not await asyncio.to_thread(self._write, taken):
                self._restore(taken)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self.flush()
