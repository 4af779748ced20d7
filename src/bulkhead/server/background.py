"""The server processes' background tasks (counter flushes, the change feed's poller, the offload log and grants)."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["cancel"]


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
