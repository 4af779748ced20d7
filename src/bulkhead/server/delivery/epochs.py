"""The credential epoch and status of each device, per process, kept current by the change feed.

A signed download URL names the credential epoch it was issued under; it is honoured only while the device
exists, is active and still holds that epoch. Resetting, rotating, disabling or deleting a device changes its
row, the change feed marks it in every server process (within its poll interval), and the next look here
reads the row again. Only requests whose signature already verified get here, so nothing unauthenticated
fills the cache; it holds at most `maxsize` devices (the oldest entry goes first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select

from ..changes import ChangeFeed
from ..db import Database
from ..models import Device

__all__ = ["DeviceEpochs", "EpochState"]

_TTL_WITHOUT_FEED = 1.0


@dataclass(frozen=True)
class EpochState:
    tenant_id: int
    epoch: int
    status: str


class DeviceEpochs:
    def __init__(self, db: Database, feed: ChangeFeed | None, maxsize: int = 100_000) -> None:
        self.db, self.feed, self.maxsize = db, feed, maxsize
        self._cache: dict[int, tuple[float, EpochState]] = {}  # device id -> (read at, monotonic; state)

    def current(self, device_id: int) -> EpochState | None:
        """The device's state now, or None when it no longer exists."""
        now = time.monotonic()
        hit = self._cache.get(device_id)
        if hit is not None and self._fresh(hit[0], hit[1], device_id, now):
            return hit[1]
        since = time.monotonic()
        with self.db.session() as s:
            row = s.execute(
                select(Device.tenant_id, Device.credential_epoch, Device.status).where(Device.id == device_id)
            ).first()
        if row is None:
            self._cache.pop(device_id, None)
            return None
        state = EpochState(int(row[0]), int(row[1] or 0), str(row[2]))
        self._cache.pop(device_id, None)
        while len(self._cache) >= self.maxsize:
            self._cache.pop(next(iter(self._cache)))
        self._cache[device_id] = (since, state)
        return state

    def _fresh(self, since: float, state: EpochState, device_id: int, now: float) -> bool:
        if self.feed is None:
            return now - since < _TTL_WITHOUT_FEED
        return self.feed.valid(state.tenant_id, device_id, since)
