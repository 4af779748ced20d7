"""SharedCounts (services/shared_counts.py): readers who arrive while a count runs share it even when what it
depends on keeps changing (a busy rollout marks devices all the time); a count begun before this process forgot
the key is not kept."""

from __future__ import annotations

import threading
import time
from typing import Any

from bulkhead.server.services.shared_counts import SharedCounts


def test_readers_waiting_for_a_count_share_it_while_changes_keep_coming() -> None:
    runs: list[float] = []

    def count(_s: Any, key: int) -> int:
        runs.append(time.monotonic())
        time.sleep(0.3)
        return key * 10

    counts: SharedCounts[int, int] = SharedCounts(count, ttl=60, still_valid=lambda _k, _at: False)  # always changed
    started = threading.Barrier(8)
    got: list[int] = []

    def read() -> None:
        started.wait()
        got.append(counts.read(None, 7))  # type: ignore[arg-type]

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [70] * 8
    assert len(runs) <= 2, f"{len(runs)} counts for 8 readers who arrived together"
    counts.read(None, 7)  # type: ignore[arg-type]
    assert len(runs) <= 3, "a reader after a change counts again"


def test_a_count_begun_before_the_key_was_forgotten_is_not_kept() -> None:
    gate, inside = threading.Event(), threading.Event()
    values = iter([1, 2])

    def count(_s: Any, _key: str) -> int:
        inside.set()
        gate.wait(5)
        return next(values)

    counts: SharedCounts[str, int] = SharedCounts(count, ttl=60)
    t = threading.Thread(target=lambda: counts.read(None, "k"))  # type: ignore[arg-type]
    t.start()
    assert inside.wait(5)
    counts.forget("k")  # a change here while the count ran
    gate.set()
    t.join()
    assert counts.read(None, "k") == 2, "the count that may have missed the change was not kept"  # type: ignore[arg-type]


def test_with_stale_while_counting_readers_get_the_replaced_count_instead_of_waiting() -> None:
    """Group counts change with every device change; during a burst a reader must not wait for a recount."""
    gate, inside = threading.Event(), threading.Event()
    values = iter([1, 2, 3])

    def count(_s: Any, _key: str) -> int:
        value = next(values)
        if value == 2:  # the recount: held until the readers below have been answered
            inside.set()
            gate.wait(5)
        return value

    changed = threading.Event()
    counts: SharedCounts[str, int] = SharedCounts(
        count, ttl=60, still_valid=lambda _k, _at: not changed.is_set(), stale_while_counting=True
    )
    assert counts.read(None, "k") == 1  # type: ignore[arg-type]
    changed.set()  # a device changed: the count is no longer valid
    recount = threading.Thread(target=lambda: counts.read(None, "k"))  # type: ignore[arg-type]
    recount.start()
    assert inside.wait(5)
    started = time.monotonic()
    assert [counts.read(None, "k") for _ in range(3)] == [1, 1, 1]  # type: ignore[arg-type]
    assert time.monotonic() - started < 1, "the readers waited for the recount"
    gate.set()
    recount.join()
    changed.clear()
    assert counts.read(None, "k") == 2  # type: ignore[arg-type]
    counts.forget("k")  # this process changed it: nothing stale to give, the reader counts
    assert counts.read(None, "k") == 3  # type: ignore[arg-type]
