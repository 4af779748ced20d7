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
