"""The server's heap: start-up's objects frozen out of collections, young collections rarer; glibc's malloc limited to
two arenas, and memory a large answer freed given back to the system by the background trim (read from /proc in a
fresh process)."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap

import pytest

from bulkhead.server import heap
from bulkhead.server.heap import YOUNG_THRESHOLD, paused_gc, tune_gc


def test_tune_gc_freezes_what_exists_and_collects_the_young_generation_less_often() -> None:
    before = gc.get_threshold()
    try:
        kept = [{"built": "at start-up"}]
        tune_gc()
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert not any(o is kept for o in gc.get_objects()), "frozen objects are not tracked by later collections"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_paused_gc_stops_collections_inside_and_restores_the_state_it_found_even_on_error() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("a feed that fails to parse")
    assert gc.isenabled(), "collections resume after a failed load"
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled(), "a caller that had collections off keeps them off"
    finally:
        gc.enable()


_CHILD = textwrap.dedent(
    """
    import re
    from bulkhead.server import heap

    def rss_mib():
        return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024

    assert heap.limit_arenas()
    before = rss_mib()
    chunks = [bytes(2000) + bytes([i % 256]) for i in range(100_000)]  # 200 MB in malloc'd blocks (not pymalloc's)
    keep = chunks[-1]  # allocated last: the heap's top stays in use, so free() alone cannot shrink it
    grown = rss_mib()
    del chunks
    freed = rss_mib()
    assert heap.trim()
    trimmed = rss_mib()
    print(before, grown, freed, trimmed)
    """
)


def test_trim_gives_back_what_a_large_answer_freed() -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=True)
    before, grown, freed, trimmed = map(float, out.stdout.split())
    assert grown - before > 150, out.stdout  # the blocks were really resident
    assert freed - before > 100, out.stdout  # free() alone kept most of them (the heap's top is still in use)
    assert trimmed - before < 30, out.stdout  # malloc_trim returned them


def test_the_trimmer_runs_in_the_background_and_stops() -> None:
    async def run() -> int:
        calls = 0
        real = heap.trim

        def counted() -> bool:
            nonlocal calls
            calls += 1
            return real()

        heap.trim = counted  # type: ignore[assignment]
        try:
            t = heap.Trimmer(interval=0.05)
            t.start()
            await asyncio.sleep(0.3)
            await t.stop()
            after_stop = calls
            await asyncio.sleep(0.2)
            assert calls == after_stop  # stopped means no more trims
        finally:
            heap.trim = real  # type: ignore[assignment]
        return calls

    assert asyncio.run(run()) >= 2
