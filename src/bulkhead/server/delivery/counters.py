"""Bytes served per device, summed in memory and flushed in aggregate (no DB write per request)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from sqlalchemy import update

from ..db import Database
from ..models import Device

__all__ = ["ByteCounter"]

log = logging.getLogger(__name__)


class ByteCounter:
    def __init__(self, db: Database, interval: float) -> None:
        self.db = db
        self.interval = interval
        self._pending: defaultdict[int, int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None

    def add(self, device_id: int, nbytes: int) -> None:
        self._pending[device_id] += nbytes

    def _take(self) -> dict[int, int]:
        """Swap out the sums gathered so far (on the event loop, where `add` runs)."""
        pending, self._pending = self._pending, defaultdict(int)
        return pending

    def _restore(self, pending: dict[int, int]) -> None:
        for device_id, n in pending.items():
            self._pending[device_id] += n

    def _write(self, pending: dict[int, int]) -> bool:
        """Write one transaction of increments; False (and logged) when the database refused."""
        try:
            with self.db.session() as s:
                for device_id, n in sorted(pending.items()):
                    s.execute(update(Device).where(Device.id == device_id).values(bytes_served=Device.bytes_served + n))
        except Exception:
            log.exception("could not flush byte counters; keeping them for the next try")
            return False
        return True

    def flush(self) -> None:
        """Write the sums gathered since the last flush (synchronously; used at shutdown)."""
        pending = self._take()
        if pending and not self._write(pending):
            self._restore(pending)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            pending = self._take()
            if pending and not await asyncio.to_thread(self._write, pending):
                self._restore(pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()
