"""The artifact-delivery ASGI app: Range, If-Range, HEAD, ETag; authorized by device token or signed URL.

Artifacts in the filesystem store are read with pread (whole files through the server's pathsend); artifacts in a
remote store (S3) are streamed from ranged GETs, or, with presigning on, devices are redirected to a presigned URL
(their bytes are then counted as the ranges they asked for, not as what reached them).
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import re
import secrets
import time
from dataclasses import dataclass

from ..asgi import Receive, Scope, Send, bearer, send_error
from ..errors import Forbidden, NotFound, ServerError
from ..security import SignedParams, parse_signed_query, verify_url
from ..services.auth import Authenticator, Principal
from ..services.ddi import DdiAuth
from ..services.devices import DeviceService
from ..services.releases import ReleaseService
from ..store import ArtifactMissing, ArtifactStore, Body
from .counters import ByteCounter, Transfer
from .epochs import DeviceEpochs
from .offload import XAccel
from .ranges import ByteRange, RangeNotSatisfiable, parse_range

__all__ = ["DeliveryApp"]


CHUNK = 1024 * 1024
_RECHECK = 1.0  # seconds between looks at an open artifact's link count
_SIGNED = re.compile(r"^/dl/([0-9a-f]{64})$")
_DEVICE = re.compile(r"^/device/v1/releases/(\d+)/(?:bundle|deltas/(\d+))$")
_USER = re.compile(r"^/api/v1/releases/(\d+)/bundle$")
_DDI = re.compile(r"^/([^/]+)/controller/v1/([^/]+)/softwaremodules/(\d+)/artifacts/([^/]+?)(\.MD5SUM)?$")
_WANTED = frozenset({b"range", b"if-range", b"if-none-match"})


@dataclass(frozen=True)
class Artifact:
    sha256: str
    size: int
    path: str


@dataclass(slots=True)
class _Remote:
    """An artifact in a remote store; `first` is the body of the first range, opened before the headers go out (a
    missing object is then still a 404)."""

    store: ArtifactStore
    sha256: str
    first: Body | None = None


@dataclass(slots=True)
class _OpenFile:
    fd: int
    etag: str
    last_modified: str
    base: list[tuple[bytes, bytes]]  # accept-ranges, etag, last-modified, cache-control
    checked: float  # when the link count was last seen non-zero


class DeliveryApp:
    """Serves stored bundles. Per request: a cached auth lookup, no database write."""

    def __init__(
        self,
        auth: Authenticator,
        devices: DeviceService,
        releases: ReleaseService,
        store: ArtifactStore,
        counter: ByteCounter,
        secret: bytes,
        ddi: DdiAuth,
        presign_ttl: int | None = None,
        offload: XAccel | None = None,
    ) -> None:
        self.auth, self.devices, self.releases, self.ddi = auth, devices, releases, ddi
        self.offload = offload  # BULKHEAD_DELIVERY_OFFLOAD=x-accel: nginx sends the bytes (offload.py)
        self.store, self.counter, self.secret = store, counter, secret
        self._release_cache: dict[tuple[int, int, int], Artifact] = {}  # (device, release, delta or 0) -> file
        self._files: dict[str, _OpenFile] = {}
        self._ddi_cache: dict[tuple[int, int], dict[str, tuple[str, str]]] = {}
        self.epochs = DeviceEpochs(devices.db, auth.feed)
        # Devices are redirected to presigned URLs of a remote store valid this long (None: bytes go through here).
        self.presign_ttl = presign_ttl
        self._remote: dict[str, tuple[int, str]] = {}  # sha256 -> (size, last-modified) of a remote artifact

    @staticmethod
    def handles(path: str) -> bool:
        return bool(_SIGNED.match(path) or _DEVICE.match(path) or _USER.match(path) or _DDI.match(path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            # Sync on purpose: tokens and releases come from in-memory caches; a miss costs one indexed read.
            artifact, device_id, md5_name, signed = self._authorize(scope)
        except ServerError as exc:
            await send_error(send, exc.status, exc.code, exc.message)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_error(send, 405, "method_not_allowed", "use GET or HEAD", [(b"allow", b"GET, HEAD")])
            return
        if md5_name is not None:
            await _md5sum(send, md5_name, scope["method"] == "HEAD")
            return
        if self.offload is not None and await self.offload.answer(scope, send, artifact, device_id, signed):
            return
        await self.serve(scope, send, artifact, device_id, receive)

    # -- authorization ------------------------------------------------------------
    def _authorize(self, scope: Scope) -> tuple[Artifact, int | None, str | None, SignedParams | None]:
        """(artifact, device to count bytes for, for a DDI .MD5SUM request the "md5  filename" line, and for a
        signed URL its parameters)."""
        path = scope["path"]
        if m := _DDI.match(path):
            return (*self._ddi_artifact(scope, m), None)
        if m := _SIGNED.match(path):
            art, params = self._signed(scope, m.group(1))
            return art, params.device_id, None, params
        art, device_id = self._authorize_bundle(scope, path)
        return art, device_id, None, None

    def _ddi_artifact(self, scope: Scope, m: re.Match[str]) -> tuple[Artifact, int | None, str | None]:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        who = self.ddi.resolve(m.group(1), m.group(2), headers)
        key = (who.device_id, int(m.group(3)))
        names = self._ddi_cache.get(key)
        if names is None or m.group(4) not in names:  # a miss may be a delta uploaded since
            names = self.devices.release_artifacts(who.tenant_id, who.compatible, int(m.group(3)))
            if len(self._ddi_cache) > 200_000:
                self._ddi_cache.clear()
            self._ddi_cache[key] = names
        name = m.group(4)
        if name not in names:
            raise NotFound(f"software module {m.group(3)} has no artifact '{name}' (it has: {', '.join(sorted(names))})")
        sha256, md5 = names[name]
        return self._file(sha256), who.device_id, (f"{md5}  {name}\n" if m.group(5) else None)

    def _authorize_bundle(self, scope: Scope, path: str) -> tuple[Artifact, int | None]:
        principal = self.auth.resolve(bearer(scope))
        if m := _DEVICE.match(path):
            if principal.kind == "device" and principal.device_status != "active":
                raise Forbidden(_inactive(principal.name, principal.device_status or "unknown"))
            return self._release_artifact(principal, int(m.group(1)), int(m.group(2) or 0)), principal.device_id
        m = _USER.match(path)
        assert m is not None
        principal.require("viewer")
        rel = self.releases.get(principal, int(m.group(1)))
        return self._file(rel["sha256"]), None

    def _signed(self, scope: Scope, sha256: str) -> tuple[Artifact, SignedParams]:
        """A signed URL's artifact: canonical parameters, a valid signature, and the device's current credential epoch."""
        params = parse_signed_query(scope.get("query_string", b"").decode("latin-1"))
        if params is None:
            raise Forbidden(
                "signed URL is malformed (it takes d, e, k and s once each, numbers in plain decimal): "
                "ask the server for a new one"
            )
        if not verify_url(self.secret, sha256, params):
            raise Forbidden("signed URL is invalid or has expired: ask the server for a new one")
        state = self.epochs.current(params.device_id)
        if state is None:
            raise Forbidden("signed URL is for a device that no longer exists")
        if state.status != "active":
            raise Forbidden(_inactive(f"device {params.device_id}", state.status))
        if state.epoch != params.epoch:
            raise Forbidden("signed URL was issued before the device's credential was reset: ask the server for a new one")
        return self._file(sha256), params

    def _release_artifact(self, who: Principal, release_id: int, delta_id: int = 0) -> Artifact:
        """A release's bundle (or, with `delta_id`, one of its delta bundles) this device may download."""
        key = (who.device_id or 0, release_id, delta_id)
        hit = self._release_cache.get(key)
        if hit is None:
            if delta_id:
                sha256 = self.devices.device_delta(who, release_id, delta_id).sha256
            else:
                sha256 = self.devices.device_release(who, release_id).sha256
            hit = self._file(sha256)
            if len(self._release_cache) > 200_000:
                self._release_cache.clear()
            self._release_cache[key] = hit
        return hit

    def _file(self, sha256: str) -> Artifact:
        local = self.store.local_path(sha256)
        if local is None:
            return self._remote_file(sha256)
        path = local
        try:
            size = os.stat(path).st_size
        except FileNotFoundError as exc:
            raise NotFound("artifact does not exist (deleted?)") from exc
        return Artifact(sha256, size, path)

    def _remote_file(self, sha256: str) -> Artifact:
        """A remote artifact (its size and time are looked up once: artifacts are immutable; one that was deleted is
        forgotten when a GET finds it missing)."""
        hit = self._remote.get(sha256)
        if hit is None:
            st = self.store.stat(sha256)  # raises ArtifactMissing, a 404
            hit = (st.size, email.utils.formatdate(st.mtime, usegmt=True))
            if len(self._remote) > 100_000:
                self._remote.clear()
            self._remote[sha256] = hit
        return Artifact(sha256, hit[0], "")

    def _open_remote(self, art: Artifact) -> _OpenFile:
        size_time = self._remote.get(art.sha256)
        last_modified = size_time[1] if size_time else email.utils.formatdate(0, usegmt=True)
        etag = f'"{art.sha256}"'
        base = [
            (b"accept-ranges", b"bytes"),
            (b"etag", etag.encode()),
            (b"last-modified", last_modified.encode()),
            (b"cache-control", b"private, max-age=0"),
        ]
        return _OpenFile(-1, etag, last_modified, base, 0.0)

    def _forget_remote(self, sha256: str) -> None:
        self._remote.pop(sha256, None)
        self._release_cache.clear()

    # -- serving ------------------------------------------------------------------
    def _open(self, art: Artifact) -> _OpenFile:
        """An open descriptor and the response headers that never change for it, kept per process (artifacts are
        immutable; a deletion is noticed by the link count, looked at once a second: a syscall costs as much as
        a tenth of a small range request)."""
        hit = self._files.get(art.path)
        if hit is not None:
            now = time.monotonic()
            if now < hit.checked + _RECHECK:
                return hit
            if os.fstat(hit.fd).st_nlink:
                hit.checked = now
                return hit
            self.forget_file(art.path)  # deleted (and perhaps uploaded again) since it was opened
        fd = os.open(art.path, os.O_RDONLY)
        last_modified = email.utils.formatdate(os.fstat(fd).st_mtime, usegmt=True)
        etag = f'"{art.sha256}"'
        base = [
            (b"accept-ranges", b"bytes"),
            (b"etag", etag.encode()),
            (b"last-modified", last_modified.encode()),
            (b"cache-control", b"private, max-age=0"),
        ]
        hit = _OpenFile(fd, etag, last_modified, base, time.monotonic())
        if len(self._files) >= 256:
            os.close(self._files.pop(next(iter(self._files))).fd)
        self._files[art.path] = hit
        return hit

    def forget_file(self, path: str) -> None:
        hit = self._files.pop(path, None)
        if hit is not None:
            os.close(hit.fd)

    async def serve(self, scope: Scope, send: Send, art: Artifact, device_id: int | None, receive: Receive | None = None) -> None:
        wanted: dict[bytes, str] = {}
        for k, v in scope["headers"]:
            if k in _WANTED:
                wanted[k] = v.decode("latin-1")
        try:
            f = self._open(art) if art.path else self._open_remote(art)
        except FileNotFoundError:
            await send_error(send, 404, "not_found", "artifact does not exist (deleted?)")
            return
        fd, etag, last_modified, base = f.fd, f.etag, f.last_modified, f.base
        inm = wanted.get(b"if-none-match")
        if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
            await send({"type": "http.response.start", "status": 304, "headers": base})
            await send({"type": "http.response.body", "body": b""})
            return
        ranges: list[ByteRange] | None = None
        rng = wanted.get(b"range")
        if rng is not None and _if_range_ok(wanted.get(b"if-range"), etag, last_modified):
            try:
                ranges = parse_range(rng, art.size)
            except RangeNotSatisfiable as exc:
                await send_error(
                    send, 416, "range_not_satisfiable", str(exc), [*base, (b"content-range", f"bytes */{art.size}".encode())]
                )
                return
        head = scope["method"] == "HEAD"
        if not art.path and self.presign_ttl and device_id is not None and not head:
            await self._redirect(send, art, device_id, ranges)
            return
        remote = None if art.path else _Remote(self.store, art.sha256)
        if remote is not None and not head and art.size:
            first = ranges[0] if ranges else None
            try:
                remote.first = await asyncio.to_thread(
                    self.store.get_range, art.sha256, first.start if first else 0, first.length if first else art.size
                )
            except ArtifactMissing:
                self._forget_remote(art.sha256)
                await send_error(send, 404, "not_found", "artifact does not exist (deleted?)")
                return
            except ServerError as exc:  # the store does not answer: 503, the device retries later
                await send_error(send, exc.status, exc.code, exc.message)
                return
        # pathsend (granian streams the file from Rust) cannot say how much reached a client that went away:
        # only downloads nobody counts (a user's) take it; a device's are counted as they go out.
        pathsend = (
            art.path
            if art.path and ranges is None and device_id is None and "http.response.pathsend" in scope.get("extensions", {})
            else None
        )
        transfer = Transfer()
        body = art.size if ranges is None else sum(r.length for r in ranges)
        # Only a body of several reads needs to notice a client leaving midway (small ranges stay lean).
        watch = receive is not None and not head and pathsend is None and body > CHUNK
        watcher = asyncio.create_task(transfer.watch(receive)) if watch and receive is not None else None
        try:
            await self._send_body(send, fd, art.size, ranges, base, head, pathsend, transfer, remote)
        finally:
            if remote is not None and remote.first is not None:
                remote.first.close()
            if watcher is not None:
                watcher.cancel()
            if device_id is not None and transfer.sent:
                self.counter.add(device_id, transfer.sent)

    async def _redirect(self, send: Send, art: Artifact, device_id: int, ranges: list[ByteRange] | None) -> None:
        """Send the device to a presigned URL of the artifact (it repeats its Range there). The bytes counted are the
        ones it asked for: what reached it is known only to the store."""
        assert self.presign_ttl is not None
        url = await asyncio.to_thread(self.store.presign, art.sha256, self.presign_ttl)
        if url is None:  # the store has no URLs to give: the caller's checks keep this unreachable
            await send_error(send, 500, "internal", "the artifact store cannot presign URLs: unset BULKHEAD_S3_PRESIGN")
            return
        await send(
            {
                "type": "http.response.start",
                "status": 307,
                "headers": [
                    (b"location", url.encode()),
                    (b"etag", f'"{art.sha256}"'.encode()),  # the artifact's, for the device's next If-Range
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        self.counter.add(device_id, art.size if ranges is None else sum(r.length for r in ranges))

    async def _send_body(
        self,
        send: Send,
        fd: int,
        size: int,
        ranges: list[ByteRange] | None,
        base: list[tuple[bytes, bytes]],
        head: bool,
        pathsend: str | None = None,
        transfer: Transfer | None = None,
        remote: _Remote | None = None,
    ) -> int:
        """Send the headers and the body; returns the number of artifact bytes sent (also counted in `transfer`,
        which stops the body early when the client has gone).

        A whole file goes out through the server's `http.response.pathsend` extension when it has one
        (granian streams it from Rust), else in 1 MiB reads.
        """
        octet = (b"content-type", b"application/octet-stream")
        if ranges is None or len(ranges) == 1:
            if ranges is None:
                status, start, length, extra = 200, 0, size, []
            else:
                r = ranges[0]
                status, start, length = 206, r.start, r.length
                extra = [(b"content-range", f"bytes {r.start}-{r.end}/{size}".encode())]
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [*base, octet, *extra, (b"content-length", str(length).encode())],
                }
            )
            if head:
                await send({"type": "http.response.body", "body": b""})
                return 0
            if pathsend is not None:
                await send({"type": "http.response.pathsend", "path": pathsend})
                return size
            if remote is not None:
                return await _stream_remote(send, remote, start, length, True, transfer or Transfer())
            return await _stream(send, fd, start, length, True, transfer or Transfer())
        boundary = secrets.token_hex(16)
        heads = [
            (
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {r.start}-{r.end}/{size}\r\n\r\n"
            ).encode()
            for r in ranges
        ]
        tail = f"--{boundary}--\r\n".encode()
        total = sum(len(h) + r.length + 2 for h, r in zip(heads, ranges, strict=True)) + len(tail)
        await send(
            {
                "type": "http.response.start",
                "status": 206,
                "headers": [
                    *base,
                    (b"content-type", f"multipart/byteranges; boundary={boundary}".encode()),
                    (b"content-length", str(total).encode()),
                ],
            }
        )
        if head:
            await send({"type": "http.response.body", "body": b""})
            return 0
        sent, transfer = 0, transfer or Transfer()
        for h, r in zip(heads, ranges, strict=True):
            if transfer.gone:
                break
            await send({"type": "http.response.body", "body": h, "more_body": True})
            if remote is not None:
                sent += await _stream_remote(send, remote, r.start, r.length, False, transfer)
            else:
                sent += await _stream(send, fd, r.start, r.length, False, transfer)
            await send({"type": "http.response.body", "body": b"\r\n", "more_body": True})
        await send({"type": "http.response.body", "body": tail})
        return sent


async def _stream(send: Send, fd: int, start: int, length: int, last: bool, transfer: Transfer) -> int:
    pos, end = start, start + length
    while pos < end and not transfer.gone:
        n = min(CHUNK, end - pos)
        data = os.pread(fd, n, pos) if n <= 65536 else await asyncio.to_thread(os.pread, fd, n, pos)
        if not data:
            break
        pos += len(data)
        await send({"type": "http.response.body", "body": data, "more_body": not (last and pos >= end)})
        transfer.sent += len(data)
        if pos < end:
            await asyncio.sleep(0)  # let the disconnect watcher run (granian's send does not wait)
    if last and pos < end:
        await send({"type": "http.response.body", "body": b""})
    if last and length == 0:
        await send({"type": "http.response.body", "body": b""})
    return pos - start


async def _stream_remote(send: Send, remote: _Remote, start: int, length: int, last: bool, transfer: Transfer) -> int:
    """`_stream` over a remote store's range: one GET per range (the first was opened before the headers)."""
    body, remote.first = remote.first, None
    if body is None and length:
        body = await asyncio.to_thread(remote.store.get_range, remote.sha256, start, length)
    got = 0
    try:
        while body is not None and got < length and not transfer.gone:
            data = await asyncio.to_thread(body.read, min(CHUNK, length - got))
            if not data:
                break
            got += len(data)
            await send({"type": "http.response.body", "body": data, "more_body": not (last and got >= length)})
            transfer.sent += len(data)
    finally:
        if body is not None:
            body.close()
    if last and (got < length or length == 0):
        await send({"type": "http.response.body", "body": b""})
    return got


async def _md5sum(send: Send, line: str, head: bool) -> None:
    body = line.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _inactive(name: str, status: str) -> str:
    if status == "disabled":
        return f"{name} is disabled: an operator must enable it ('bulkhead device enable') before it gets artifacts"
    return f"{name} is {status}: an operator must approve it before it gets artifacts"


def _if_range_ok(if_range: str | None, etag: str, last_modified: str) -> bool:
    """True when the Range header applies: no If-Range, or it names the current representation."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(("W/", '"')):
        return value == etag
    return value == last_modified
