"""Failed authentications counted per client address, in a bounded in-memory table; too many answer 429."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from cachetools import TTLCache

__all__ = ["AuthFailures"]


class AuthFailures:
    """At most `limit` failed authentications per address in a fixed window of `window` seconds.

    Only counters are kept (address → window start, count), at most `max_addresses` of them, each forgotten after
    its window: an attacker who rotates addresses evicts old counters but cannot grow the table.
    """

    def __init__(
        self, limit: int, window: float, max_addresses: int = 65536, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._counts: TTLCache[str, tuple[float, int]] = TTLCache(max_addresses, window, timer=clock)

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again (0: it may now)."""
        entry = self._counts.get(address)
        if entry is None or entry[1] < self.limit:
            return 0
        return max(1, math.ceil(entry[0] + self.window - self.clock()))

    def failed(self, address: str) -> int:
        """Count one failure; the number of failures in the address's current window."""
        now = self.clock()
        start, count = self._counts.get(address, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        count += 1
        self._counts[address] = (start, count)
        return count
