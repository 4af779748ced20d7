"""A local HTTP server for the multi-file feed tests (http.server in a thread): files by path, each with a strong
ETag (its sha256), 304 on If-None-Match, byte ranges with If-Range, 404 for a path it does not hold; it can be told
to fail a path (HTTP 500) or to cut a path's download short."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Files:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.fail: set[str] = set()
        self.cut: dict[str, int] = {}  # path -> bytes sent before the connection drops
        self.requests: list[tuple[str, dict[str, str]]] = []

    def etag(self, path: str) -> str:
        return '"' + hashlib.sha256(self.files[path]).hexdigest()[:16] + '"'

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]

    def headers_of(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]


def _handler(files: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path
            files.requests.append((path, dict(self.headers.items())))
            if path in files.fail:
                self._send(500, b"internal error", {})
                return
            if path not in files.files:
                self._send(404, b"not found", {})
                return
            body, etag = files.files[path], files.etag(path)
            if self.headers.get("If-None-Match") == etag:
                self._send(304, b"", {"ETag": etag})
                return
            status, extra = 200, {"ETag": etag}
            rng = self.headers.get("Range")
            if rng and self.headers.get("If-Range") == etag:
                start = int(rng.removeprefix("bytes=").rstrip("-"))
                status, extra["Content-Range"] = 206, f"bytes {start}-{len(body) - 1}/{len(body)}"
                body = body[start:]
            cut = files.cut.pop(path, None)
            self._send(status, body, extra, cut)

        def _send(self, status: int, body: bytes, headers: dict[str, str], cut: int | None = None) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status == 304:
                return
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@contextmanager
def serve() -> Iterator[tuple[Files, str]]:
    files = Files()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield files, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
