"""The poll path as a lean ASGI app: the agent's /device/v1/state and the DDI root, answered from memory.

Per poll: a cached credential check, a cached answer (see pollcache.py and changes.py), an in-memory
last-seen mark. Only after a change does a poll read the database, in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

from ..asgi import Receive, Scope, Send, bearer, send_error
from ..errors import Forbidden, ServerError
from ..pollcache import Answer, PollCache
from .ddi import root_answer
from .deps import Services
from .device import state_answer

__all__ = ["PollApp"]

_STATE = "/device/v1/state"
_DDI_ROOT = re.compile(r"^/([^/]+)/controller/v1/([^/]+)$")


class PollApp:
    def __init__(self, svc: Services, cache: PollCache) -> None:
        self.svc, self.cache = svc, cache

    @staticmethod
    def handles(scope: Scope) -> bool:
        path = scope["path"]
        return scope["method"] in ("GET", "HEAD") and (path == _STATE or _DDI_ROOT.match(path) is not None)

    def _base(self, scope: Scope, headers: dict[str, str]) -> str:
        if self.svc.settings.public_url:
            return self.svc.settings.public_url.rstrip("/")
        host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
        return f"{scope.get('scheme', 'http')}://{host}"

    def _key_base(self, url: str) -> str:
        """The URL part of a cache key: with a public URL every answer's links are the same whatever Host a client
        sent, so one entry per device; without one the links follow the Host header and so must the key."""
        return "" if self.svc.settings.public_url else url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            base = self._base(scope, headers)
            m = _DDI_ROOT.match(scope["path"])
            if m is None:
                who = self.svc.auth.resolve(bearer(scope))
                if who.kind != "device" or who.device_id is None:
                    raise Forbidden("this endpoint is for devices")
                key, tenant_id, device_id = ("state", who.device_id, self._key_base(base)), who.tenant_id, who.device_id
                build: Callable[[], Answer] = lambda: state_answer(self.svc, who, base)  # noqa: E731
            else:
                caller = self.svc.ddi_auth.resolve(m.group(1), m.group(2), headers)
                root = f"{base}/{m.group(1)}/controller/v1/{m.group(2)}"
                key, tenant_id, device_id = ("ddi", caller.device_id, self._key_base(root)), caller.tenant_id, caller.device_id
                build = lambda: root_answer(self.svc, caller, root)  # noqa: E731
            answer = self.cache.get(key)
            if answer is None:
                since = time.monotonic()
                answer = await asyncio.to_thread(build)
                self.cache.put(key, tenant_id, since, answer)
        except ServerError as exc:
            await send_error(send, exc.status, exc.code, exc.message)
            return
        if self.svc.activity is not None:
            self.svc.activity.seen(device_id)
        etag = (b"etag", answer.etag.encode())
        if headers.get("if-none-match") == answer.etag:
            await _send(send, 304, [etag])
        else:
            hdrs = [(b"content-type", answer.content_type.encode()), (b"content-length", str(len(answer.raw)).encode()), etag]
            await _send(send, 200, hdrs, b"" if scope["method"] == "HEAD" else answer.raw)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
