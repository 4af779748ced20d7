"""Plain ASGI plumbing shared by the lean apps in front of FastAPI (artifact delivery, polls)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

__all__ = ["REQUEST_ID", "Receive", "Scope", "Send", "bearer", "bearer_token", "error_body", "send_error"]

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# The id of the request being served (set by edge.Edge for every request; answered as X-Request-ID and logged).
REQUEST_ID: ContextVar[str] = ContextVar("bulkhead_request_id", default="-")


def error_body(code: str, message: str) -> dict[str, str]:
    """The server's one error shape: what went wrong, what to do, and the id to quote when asking for help."""
    return {"error": code, "message": message, "request_id": REQUEST_ID.get()}


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer …` header value, if it is one."""
    return header[7:].strip() or None if header[:7].lower() == "bearer " else None


def bearer(scope: Scope) -> str | None:
    """The token of a raw ASGI request's `Authorization: Bearer …` header, if there is one."""
    for k, v in scope["headers"]:
        if k == b"authorization":
            return bearer_token(v.decode("latin-1"))
    return None


async def send_error(send: Send, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """The server's JSON error body ({"error", "message", "request_id"}), as FastAPI's handlers answer it."""
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*(extra or []), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
