"""A TCP proxy whose connections the test can cut, to drop a download mid-way as a flaky link would."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.live import free_port


class CuttableProxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._lsock = socket.create_server(("127.0.0.1", self.port))
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._lsock.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                client.close()  # the link is down: connections are refused at once
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            # small buffers in the proxy, so that little is in flight when the test cuts the link
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 << 10)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self, down_for: float) -> None:
        """Drop every open connection and refuse new ones for `down_for` seconds."""
        self._down_until = time.monotonic() + down_for
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self._lsock.close()
        self.cut(0)
