"""A WebSocket client (RFC 6455) on the standard library: the carrier of remote sessions (docs/adr/0011).

Just what the tunnel needs: the opening handshake over a socket (TLS when the URL is https/wss), masked text and
binary frames out, frames in (fragments joined, pings answered, close answered), a bound on a message's size; what
RFC 6455 says to fail on (reserved bits, masked or fragmented control frames, a data frame inside a fragmented
message) ends the connection. Sends may come from any thread, one thread receives: every read and write of the socket
happens under one lock (an SSL connection must not be read and written at once), and a reader waits for data with
select() outside it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import select
import socket
import ssl
import struct
import threading
import time
from urllib.parse import urlsplit

from .errors import TunnelError

__all__ = ["MAX_MESSAGE", "WebSocket"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 4 * 1024 * 1024
_IO_SECONDS = 30.0  # the longest one read or write of the socket may block
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


class WebSocket:
    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self.sock, self._buf = sock, bytearray(buffered)
        self._lock = threading.Lock()
        self.closed = False
        self._timeout: float | None = None  # how long recv() waits for a whole message (None: forever)
        self._parts: list[bytes] = []  # a fragmented message's frames so far (kept across a timeout)
        self._first = _BINARY
        sock.settimeout(_IO_SECONDS)  # a read or write under the lock never blocks longer

    @classmethod
    def connect(cls, url: str, headers: dict[str, str], context: ssl.SSLContext | None, timeout: float) -> WebSocket:
        """Open `url` (http, https, ws or wss); TunnelError when the server does not switch protocols."""
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise TunnelError(f"unusable tunnel URL {url!r}")
        port = parts.port or (443 if secure else 80)
        sock: socket.socket = socket.create_connection((parts.hostname, port), timeout)
        try:
            if secure:
                sock = (context or ssl.create_default_context()).wrap_socket(sock, server_hostname=parts.hostname)
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [
                f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
                f"Host: {parts.netloc}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
                *(f"{k}: {v}" for k, v in headers.items()),
            ]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            head = bytearray()
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk or len(head) > 16384:
                    raise TunnelError(f"{url}: the server closed the connection during the WebSocket handshake")
                head += chunk
            raw, _, rest = bytes(head).partition(b"\r\n\r\n")
            status, *fields = raw.decode("latin-1").split("\r\n")
            if status.split(" ")[1:2] != ["101"]:
                raise TunnelError(f"{url}: the server refused the WebSocket ({status.strip()}{_why(rest)})")
            answer = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
            if answer.get("upgrade", "").lower() != "websocket" or "upgrade" not in answer.get("connection", "").lower():
                raise TunnelError(f"{url}: the server's 101 answer does not upgrade to a WebSocket")
            expected = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
            if answer.get("sec-websocket-accept") != expected:
                raise TunnelError(f"{url}: the WebSocket handshake's Sec-WebSocket-Accept is wrong")
            return cls(sock, rest)
        except BaseException:
            sock.close()
            raise

    # -- sending -----------------------------------------------------------------------------
    def send(self, message: str | bytes) -> None:
        data, opcode = (message, _BINARY) if isinstance(message, bytes) else (message.encode(), _TEXT)
        self._frame(opcode, data)

    def _frame(self, opcode: int, data: bytes) -> None:
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        key = os.urandom(4)
        with self._lock:
            if self.closed and opcode != _CLOSE:
                raise TunnelError("the WebSocket is closed")
            try:
                self.sock.sendall(head + key + _mask(data, key))
            except OSError as e:
                raise TunnelError(f"sending on the WebSocket: {e}") from None

    # -- receiving ---------------------------------------------------------------------------
    def recv(self) -> str | bytes | None:
        """The next message, None once the server closed; TimeoutError when `settimeout`'s time passes with no
        whole message (nothing is lost: partial frames and fragments wait for the next call)."""
        while True:
            fin, opcode, payload = self._next_frame()
            if opcode == _PING:
                self._frame(_PONG, payload)
                continue
            if opcode == _PONG:
                continue
            if opcode == _CLOSE:
                self.close(payload[:2] if len(payload) >= 2 else b"")
                return None
            if opcode in (_TEXT, _BINARY):
                if self._parts:
                    raise self._fail("a new message began inside a fragmented one")
                self._first, self._parts = opcode, [payload]
            elif opcode == _CONT and self._parts:
                self._parts.append(payload)
            else:
                raise self._fail(f"unexpected WebSocket frame (opcode {opcode})")
            if sum(map(len, self._parts)) > MAX_MESSAGE:
                raise self._fail(f"a WebSocket message over {MAX_MESSAGE} bytes")
            if fin:
                data, self._parts = b"".join(self._parts), []
                if self._first == _BINARY:
                    return data
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    raise self._fail("a text message that is not UTF-8") from None

    def _fail(self, why: str) -> TunnelError:
        self.close(struct.pack("!H", 1002))
        return TunnelError(why)

    def _next_frame(self) -> tuple[bool, int, bytes]:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            if self.closed:
                raise TunnelError("the WebSocket is closed")
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
            if not pending:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    ready, _, _ = select.select([self.sock], [], [], left)
                except (OSError, ValueError) as e:  # closed by another thread
                    raise TunnelError(f"reading the WebSocket: {e}") from None
                if not ready:
                    raise TimeoutError("no WebSocket message in time")
            with self._lock:
                try:
                    chunk = self.sock.recv(65536)
                except ssl.SSLWantReadError:
                    continue  # only part of a TLS record: wait for the rest
                except OSError as e:
                    raise TunnelError(f"reading the WebSocket: {e}") from None
            if not chunk:
                self.closed = True
                raise TunnelError("the server closed the WebSocket's connection")
            self._buf += chunk

    def _parse(self) -> tuple[bool, int, bytes] | None:
        b = self._buf
        if len(b) < 2:
            return None
        fin, opcode, masked, n, at = bool(b[0] & 0x80), b[0] & 0x0F, bool(b[1] & 0x80), b[1] & 0x7F, 2
        if b[0] & 0x70:
            raise self._fail("a WebSocket frame with reserved bits set (no extension was agreed)")
        if masked:
            raise self._fail("a masked frame from the server")
        if opcode >= 0x8 and (not fin or n > 125):
            raise self._fail("a fragmented or oversized control frame")
        if n == 126:
            if len(b) < 4:
                return None
            n, at = struct.unpack_from("!H", b, 2)[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, at = struct.unpack_from("!Q", b, 2)[0], 10
        if n > MAX_MESSAGE:
            raise self._fail(f"a WebSocket frame of {n} bytes")
        if len(b) < at + n:
            return None
        payload = bytes(b[at : at + n])
        del b[: at + n]
        return fin, opcode, payload

    def settimeout(self, seconds: float | None) -> None:
        """How long `recv` waits for a whole message (None: forever)."""
        self._timeout = seconds

    def close(self, code: bytes = struct.pack("!H", 1000)) -> None:
        """Send Close (answering the server's with its code), wait a moment for the server's, then close the socket."""
        if self.closed:
            return
        with contextlib.suppress(TunnelError):
            self._frame(_CLOSE, code)
        self.closed = True
        with contextlib.suppress(OSError, ValueError):
            if select.select([self.sock], [], [], 1.0)[0]:
                with self._lock:
                    self.sock.recv(4096)  # the server's Close (or the end of the stream)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _why(body: bytes) -> str:
    """The reason in a refusal's JSON body (the server's {"message"}), if there is one."""
    try:
        message = json.loads(body.decode("utf-8", "replace")).get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {message}" if isinstance(message, str) else ""
