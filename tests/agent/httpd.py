"""A real local HTTP(S) server in a thread whose answers a test scripts: `handler(request) -> Answer`."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: int | None = None  # None: the body's true length; another number: a lie
    cut_after: int | None = None  # close the connection after this many body bytes
    delay: float = 0.0  # seconds before the status line
    raw: bytes | None = None  # send these bytes instead of an HTTP answer


Handler = Callable[[Request], Answer]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    handler: Handler

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # failed TLS handshakes and clients that hang up are what these tests provoke


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        a = self.server.handler(req)
        if a.delay:
            time.sleep(a.delay)
        self.close_connection = True
        try:
            if a.raw is not None:
                self.wfile.write(a.raw)
                return
            self.send_response_only(a.status)
            for k, v in a.headers:
                self.send_header(k, v)
            self.send_header("content-length", str(len(a.body) if a.content_length is None else a.content_length))
            self.send_header("connection", "close")
            self.end_headers()
            body = a.body if a.cut_after is None else a.body[: a.cut_after]
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
            if a.cut_after is not None:
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass

    do_GET = do_POST = do_PUT = _answer


@contextmanager
def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve on 127.0.0.1 (HTTPS with the given server context); yields the base URL."""
    server = _Server(("127.0.0.1", 0), _RequestHandler)
    server.handler = handler
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)
