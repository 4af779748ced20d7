"""Delivery offload to nginx: an authorized download is answered with `X-Accel-Redirect`; nginx sends the bytes.

The server still authorizes every request (the same 401/403/404 answers) and answers 304 and 416 itself; for
a whole file, or one simple range (`bytes=A-B`, `bytes=A-`, `bytes=-N`), it answers an empty 200 that names
the stored file under nginx's internal location (`BULKHEAD_DELIVERY_OFFLOAD_PREFIX`), and nginx serves it
with sendfile, Range and If-Range. Where nginx's answer could differ from the embedded one (several ranges,
a Range header the embedded parser ignores, If-Range by date, If-Match) the embedded path serves the request.

nginx writes what it sent per device to its access log (`X-Bulkhead-Device`, which nginx logs and never
passes to the client); `offload_log.py` adds those bytes to the counters. See docs/adr/0008-delivery-offload.md.
"""

from __future__ import annotations

import email.utils
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..asgi import Scope, Send, send_error
from .ranges import RangeNotSatisfiable, parse_range

if TYPE_CHECKING:
    from ..security import SignedParams
    from .app import Artifact
    from .grants import OffloadGrants

__all__ = ["DEVICE_HEADER", "XAccel"]

DEVICE_HEADER = b"x-bulkhead-device"
# The Range forms nginx answers exactly as the embedded path does (one range, no spaces, no reversed ends).
_SIMPLE = re.compile(r"bytes=(?:([0-9]{1,18})-([0-9]{0,18})|-([0-9]{1,18}))")
_WANTED = frozenset({b"range", b"if-range", b"if-none-match", b"if-match", b"if-unmodified-since"})


class XAccel:
    """Decides per authorized request: answer here (304, 416), hand to nginx, or leave to the embedded path."""

    def __init__(self, prefix: str, root: Path, grants: OffloadGrants | None = None) -> None:
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError("the offload prefix must start and end with '/', such as /_store/")
        self.prefix = prefix
        self.root = str(root) + os.sep
        self.grants = grants  # signed URLs handed to nginx are granted to it (grants.py)

    def uri(self, art: Artifact) -> bytes:
        """The internal URI of a stored file: the prefix and its path under the store root."""
        if not art.path.startswith(self.root):
            raise ValueError(f"{art.path} is not in the artifact store {self.root}")
        return (self.prefix + art.path[len(self.root) :]).encode()

    async def answer(
        self, scope: Scope, send: Send, art: Artifact, device_id: int | None, signed: SignedParams | None = None
    ) -> bool:
        """Answer the request (True), or False when the embedded path must serve it. A signed URL (`signed`, its
        verified parameters) handed to nginx is granted to it: nginx serves its next requests without asking."""
        wanted: dict[bytes, str] = {}
        for k, v in scope["headers"]:
            if k in _WANTED:
                wanted[k] = v.decode("latin-1")
        if b"if-match" in wanted or b"if-unmodified-since" in wanted:
            return False  # nginx would answer 412 where the embedded path ignores them
        etag = f'"{art.sha256}"'
        inm = wanted.get(b"if-none-match")
        if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
            await send({"type": "http.response.start", "status": 304, "headers": _base(art, etag)})
            await send({"type": "http.response.body", "body": b""})
            return True
        ranged = False
        rng = wanted.get(b"range")
        if rng is not None:
            if_range = wanted.get(b"if-range")
            value = if_range.strip() if if_range is not None else None
            if value is not None and not value.startswith(("W/", '"')):
                return False  # If-Range by date: nginx compares parsed dates, the embedded path the exact text
            if value is None or value == etag:
                try:
                    ranges = parse_range(rng, art.size)
                except RangeNotSatisfiable as exc:
                    extra = [*_base(art, etag), (b"content-range", f"bytes */{art.size}".encode())]
                    await send_error(send, 416, "range_not_satisfiable", str(exc), extra)
                    return True
                if ranges is None or len(ranges) != 1 or not _simple(rng):
                    return False
                ranged = True
        headers = [
            (b"x-accel-redirect", self.uri(art)),
            (b"etag", etag.encode()),
            (b"cache-control", b"private, max-age=0"),
            (b"content-type", b"application/octet-stream"),
            (b"content-length", b"0"),
        ]
        if ranged:  # nginx adds Accept-Ranges to a 200 itself, but not to a 206
            headers.append((b"accept-ranges", b"bytes"))
        if device_id is not None:
            headers.append((DEVICE_HEADER, str(device_id).encode()))
        if signed is not None and self.grants is not None:
            self.grants.issue(art.sha256, signed)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return True


def _simple(rng: str) -> bool:
    m = _SIMPLE.fullmatch(rng)
    if m is None:
        return False
    if m.group(3) is not None:
        return int(m.group(3)) > 0
    return not m.group(2) or int(m.group(1)) <= int(m.group(2))


def _base(art: Artifact, etag: str) -> list[tuple[bytes, bytes]]:
    """The headers the embedded path sends with 304 and 416 (rare answers: the file's time is read for them)."""
    try:
        last_modified = email.utils.formatdate(os.stat(art.path).st_mtime, usegmt=True)
    except FileNotFoundError:
        last_modified = email.utils.formatdate(usegmt=True)
    return [
        (b"accept-ranges", b"bytes"),
        (b"etag", etag.encode()),
        (b"last-modified", last_modified.encode()),
        (b"cache-control", b"private, max-age=0"),
    ]
