"""The outermost ASGI layer: a request id, security headers, failed-authentication limits, a JSON 500 for the rest.

Every response carries X-Request-ID (also in every error body and in the log line of an unexpected error),
X-Content-Type-Options, X-Frame-Options and Referrer-Policy, and over TLS Strict-Transport-Security. A 401
counts against the client's address (logged without what it presented); past the limit the address gets 429
with Retry-After until its window ends. An exception nothing else handled is logged with its request id and
answered as a JSON 500 without any detail.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import MutableMapping
from typing import Any

from .asgi import REQUEST_ID, Receive, Scope, Send, send_error
from .authlimit import AuthFailures

__all__ = ["SECURITY_HEADERS", "Edge"]

log = logging.getLogger("bulkhead.server")

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_HSTS = (b"strict-transport-security", b"max-age=31536000")


class Edge:
    def __init__(self, app: Any, failures: AuthFailures | None = None) -> None:
        self.app, self.failures = app, failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        token = REQUEST_ID.set(rid)
        extra = [*SECURITY_HEADERS, (b"x-request-id", rid.encode())]
        if scope.get("scheme") == "https":
            extra.append(_HSTS)
        address = str((scope.get("client") or ("unknown",))[0])
        status = 0

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in have)]
            await send(message)

        try:
            # The health checks stay open: a load balancer on a blocked address must not take the server out.
            limited = self.failures is not None and scope["path"] not in ("/healthz", "/readyz")
            wait = self.failures.retry_after(address) if limited and self.failures is not None else 0
            if wait:
                message = f"too many failed authentications from {address}; try again in {wait} s with a valid credential"
                await send_error(send_with_headers, 429, "too_many_requests", message, [(b"retry-after", str(wait).encode())])
                return
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                log.exception("unexpected error in request %s (%s %s)", rid, scope["method"], scope["path"])
                if not status:
                    message = f"unexpected server error; the operator finds it in the server log under request id {rid}"
                    await send_error(send_with_headers, 500, "internal", message)
            if status == 401:
                count = self.failures.failed(address) if self.failures is not None else 0
                counted = f"{count} in this window, " if self.failures is not None else ""
                log.warning(
                    "authentication failed from %s: %s %s (%srequest %s)", address, scope["method"], scope["path"], counted, rid
                )
        finally:
            REQUEST_ID.reset(token)
