"""Group commit: requests' writes gathered while the previous batch commits, written together, each answered after.

Under load, a transaction per request spends the machine on per-transaction work (a round trip per statement, a
WAL flush per commit). Here a request hands its item over and waits; one writer at a time takes everything that
has gathered since its last batch and writes it in one call (in a worker thread). Nothing waits for a batch to
fill: an idle server writes each request at once, and a busy one writes bigger batches. A request is answered only
after the batch holding its item returned, that is after its commit ("nothing lost").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Callable[[list[T]], list[R | Exception]], max_batch: int = 500) -> None:
        """`write` takes a batch and returns one outcome per item, in order: a result, or the exception to raise."""
        self.write, self.max_batch = write, max_batch
        # A thread of its own: a batch never waits behind other work in the event loop's shared thread pool.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="group-commit")
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = self.items = 0

    async def submit(self, item: T) -> R:
        """Write `item` with the next batch; returns its result once the batch is written (or raises its error)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        # Shielded: a request whose client went away still leaves its item in the batch, written and answered.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                try:
                    items = [item for item, _ in batch]
                    outcomes = await asyncio.get_running_loop().run_in_executor(self._thread, self.write, items)
                    if len(outcomes) != len(batch):
                        raise RuntimeError(f"a batch of {len(batch)} items got {len(outcomes)} outcomes")
                except Exception as exc:  # the batch as a whole failed: every request in it hears of it
                    outcomes = [exc] * len(batch)
                self.batches += 1
                self.items += len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._writer = None
