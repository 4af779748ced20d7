"""Garbage collection tuned for a server process: what start-up built is left out, and young collections run less often.

Measured on the report path (2 workers, PostgreSQL, 64 connections): with CPython's defaults, collections that walk
the whole heap (the framework, the ORM's mappings, the caches) stalled the event loop often enough to make the p99
latency 130-140 ms at a p50 of 21 ms; with start-up's objects frozen and the youngest generation collected after
50,000 allocations instead of 700, the p99 was 46 ms, and throughput rose by a fifth.

50,000 was too far: a request that allocates thousands of objects (a list read through FastAPI and pydantic) is
still alive at most young collections, so its objects, cycles among them, moved on to the older generations, which
CPython collects rarely. Side by side at 100,000 devices (bench/scale.py's fleet and measurements: 4,000 list reads
one after the other, then three passes of reports): with 50,000 a worker's RSS reached 350-357 MiB and reports ran
at 1,898, 2,208 and 2,613/s (p99 106, 60, 45 ms); with 10,000, RSS stayed at 220-228 MiB, the list reads took a
third less time and reports ran at 2,424, 3,335 and 3,290/s (p99 53, 35, 36 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Trimmer", "limit_arenas", "paused_gc", "tune_gc"]

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 10_000  # allocations (net) of container objects between collections of the youngest generation


def tune_gc() -> None:
    """Freeze what exists now (start-up: modules, the app, the engine) out of every later collection, and collect the
    youngest generation less often. Cycles are still collected; the permanent generation is never freed, so call this
    once the process has built what it keeps for its lifetime."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a bulk of acyclic data is built (a feed of 50,000 CVE records is about a
    million objects: with collections on, every young collection re-walks what was built so far, and parsing took 3x
    as long). Reference counting still frees everything; collections resume, as they were, at the end."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 2  # malloc arenas per process: one per core of the machines the server is sized for


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, found once per process (find_library runs ldconfig; the trimmer asks every 30 s)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only (musl has neither)
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Let glibc's malloc keep at most `arenas` arenas in this process, as MALLOC_ARENA_MAX does; call it before the
    worker threads start. By default glibc gives every thread that allocates its own arena, up to 8 per core: a
    server's thread pool then holds memory freed in one arena that another cannot reuse, and a worker's RSS
    after a mix of list reads and reports stayed above what it uses (bench/scale.py). False where malloc is not
    glibc's (nothing changes there)."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, arenas) == 1)


def trim() -> bool:
    """Give the memory malloc holds free back to the system (glibc's malloc_trim: the top of each heap, and whole
    free pages inside them). True if any was returned."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)


class Trimmer:
    """Trims the heap every `interval` seconds in the background: memory a large answer (a page of 1,000 devices, an
    export) needed goes back to the system after it, instead of staying the worker's RSS until the process ends."""

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(trim)
            except Exception:  # never the reason a worker stops
                log.exception("malloc_trim failed")

    def start(self) -> None:
        if _libc() is not None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
