"""Remote sessions (a shell on a device, or a forwarded TCP port) through the server: statuses and wire messages.

The device keeps no listening port. While its tenant allows remote access, the agent holds one outbound WebSocket
to the server (`/device/v1/tunnel`, the control channel) on which the server says `{"open": <connection id>, ...}`;
the agent then dials `/device/v1/tunnel/<connection id>` and the server joins that WebSocket to the operator's.
On a joined connection binary messages are the bytes (a terminal's input and output, a TCP stream), text messages
are JSON control: `{"resize": [cols, rows]}` from the operator, `{"exit": code}` from the device when its shell
ended, `{"error": message}` from either side before it closes. Standard library only: the agent imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

__all__ = [
    "CONTROL_PATH",
    "MAX_MESSAGE_BYTES",
    "PING_SECONDS",
    "SESSION_TRANSITIONS",
    "SessionKind",
    "SessionStatus",
    "control",
    "parse_control",
    "session_may",
]

CONTROL_PATH = "/device/v1/tunnel"
MAX_MESSAGE_BYTES = 64 * 1024  # a message on a session (a read of a terminal or a socket is at most this)
PING_SECONDS = 30.0  # the control channel's keepalive (NAT and proxies drop idle connections)


class SessionKind(StrEnum):
    SHELL = "shell"  # a login shell on a pseudo-terminal, as root
    FORWARD = "forward"  # TCP connections to host:port as the device reaches it


class SessionStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # by the operator, by the idle timeout, by the shell's exit, or the tenant's switch


SESSION_TRANSITIONS: Mapping[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.OPEN: frozenset({SessionStatus.CLOSED}),
    SessionStatus.CLOSED: frozenset(),
}


def session_may(current: str, new: str) -> bool:
    return SessionStatus(new) in SESSION_TRANSITIONS[SessionStatus(current)]


def control(**fields: Any) -> str:
    """A control message as sent on a session or the control channel."""
    return json.dumps(fields, separators=(",", ":"))


def parse_control(text: str) -> dict[str, Any]:
    """A control message; anything that is not a JSON object is an empty one (ignored by both sides)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
