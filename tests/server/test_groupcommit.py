"""Group commit: requests that arrive while a batch is being written go together into the next one, and each is
answered with its own outcome only after the write that holds it returned."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bulkhead.server.groupcommit import GroupCommit


def test_requests_arriving_during_a_write_share_the_next_batch_and_are_answered_after_it() -> None:
    release = threading.Event()
    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int | Exception]:
        if not batches:
            release.wait(5)  # the first batch is slow: everything else arrives meanwhile
        batches.append(items)
        return [ValueError(f"no {i}") if i == 13 else i * 10 for i in items]

    async def main() -> list[object]:
        gc: GroupCommit[int, int] = GroupCommit(write)
        first = asyncio.create_task(gc.submit(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(gc.submit(i)) for i in range(1, 30)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in [first, *rest]), "nobody is answered before the write returned"
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert batches == [[0], list(range(1, 30))]
    assert results[13].__class__ is ValueError and str(results[13]) == "no 13"
    assert [r for i, r in enumerate(results) if i != 13] == [i * 10 for i in range(30) if i != 13]


def test_a_write_that_fails_as_a_whole_fails_each_request_in_it_and_the_next_batch_runs() -> None:
    calls: list[list[str]] = []

    def write(items: list[str]) -> list[str | Exception]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("database gone")
        return items

    async def main() -> None:
        gc: GroupCommit[str, str] = GroupCommit(write)
        with pytest.raises(RuntimeError, match="database gone"):
            await gc.submit("a")
        assert await gc.submit("b") == "b"

    asyncio.run(main())
    assert calls == [["a"], ["b"]]
