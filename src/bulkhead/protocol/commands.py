"""Remote commands: an administrator's command line run on a device, its exit code and bounded output collected.

The server lists a device's pending commands in its state answer; the agent says when it starts one (`running`),
runs it without a shell (argv as given; `sh -c` when a shell is wanted) with a time limit, and reports how it ended
with the first and last 32 KiB of its output. Standard library only: the agent imports it on devices.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "COMMAND_TRANSITIONS",
    "MAX_ARGS",
    "MAX_ARGV_CHARS",
    "MAX_COMMAND_SECONDS",
    "MAX_OUTPUT_BYTES",
    "CommandStatus",
    "command_may",
    "output_text",
]

MAX_ARGS = 64
MAX_ARGV_CHARS = 16 * 1024  # all arguments together
MAX_COMMAND_SECONDS = 3600
MAX_OUTPUT_BYTES = 64 * 1024  # what is kept of stdout and stderr together


class CommandStatus(StrEnum):
    PENDING = "pending"  # asked for; in the device's state answer
    RUNNING = "running"  # the agent started it
    EXITED = "exited"  # it ended by itself: see the exit code
    TIMED_OUT = "timed_out"  # killed at its time limit
    FAILED = "failed"  # it could not be started (no such program, not executable)
    INTERRUPTED = "interrupted"  # the agent stopped (a reboot, a crash) while it ran: not run again
    CANCELED = "canceled"  # withdrawn before the device started it


C = CommandStatus
FINISHED = frozenset({C.EXITED, C.TIMED_OUT, C.FAILED, C.INTERRUPTED, C.CANCELED})

# The one table: which status may follow which. A device may report the end without having said it started (its
# `running` report was lost); an operator withdraws only what has not started.
COMMAND_TRANSITIONS: Mapping[CommandStatus, frozenset[CommandStatus]] = {
    C.PENDING: frozenset(FINISHED | {C.RUNNING}),
    C.RUNNING: frozenset(FINISHED - {C.CANCELED}),
    **{s: frozenset() for s in FINISHED},
}


def command_may(current: str, new: str) -> bool:
    return CommandStatus(new) in COMMAND_TRANSITIONS[CommandStatus(current)]


def output_text(head: bytes, tail: bytes, total: int) -> tuple[str, bool]:
    """A command's output as kept (its first bytes `head`, its last bytes `tail`, `total` written in all) as text,
    undecodable bytes and NUL replaced (U+FFFD), with a line saying how much was left out between them; and whether any was."""
    skipped = total - len(head) - len(tail)

    def text(data: bytes) -> str:
        return data.decode("utf-8", "replace").replace("\0", "\ufffd")  # no JSON reader takes NUL in a string

    if skipped <= 0:
        return text(head + tail), False
    return f"{text(head)}\n[... {skipped} bytes left out ...]\n{text(tail)}", True
