"""The one injectable clock services read the time from: the system's by default, a test's own where it passes one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

__all__ = ["Clock", "system_clock"]

Clock = Callable[[], dt.datetime]  # returns an aware UTC time


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
