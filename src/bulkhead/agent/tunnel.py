"""Remote sessions on the device (docs/adr/0011): the control channel and the connections it asks for.

While the server's state answer has `remote` (the tenant allows sessions) and the device maker did not turn them
off (`remote_sessions = false`), a thread holds the control channel, a WebSocket to the server, pinging it every
`PING_SECONDS` and dialing it again with backoff when it drops. For each `{"open": id}` the server sends, a thread
dials `<tunnel>/<id>` and runs what the session is: a shell on a pseudo-terminal (root's login shell; the
operator's terminal size; SIGHUP to its process group when the operator leaves; its exit status sent back), or a
TCP connection to the target. The device listens on no port.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pty
import random
import signal
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Sequence

from bulkhead.protocol.tunnel import MAX_MESSAGE_BYTES, PING_SECONDS, control, parse_control

from .errors import AgentError
from .websocket import WebSocket

__all__ = ["Tunnel"]

log = logging.getLogger(__name__)

Dial = Callable[[str], WebSocket]


class Tunnel:
    def __init__(self, dial: Dial, shell: Sequence[str] = ("/bin/sh", "-l"), enabled: bool = True) -> None:
        self.dial, self.shell, self.enabled = dial, tuple(shell), enabled
        self._url: str | None = None
        self._ws: WebSocket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.connections = 0  # joined since start (tests, footprint)

    def want(self, url: str | None) -> None:
        """What the latest state answer says: hold the control channel at `url`, or none (None)."""
        url = url if self.enabled else None
        with self._lock:
            if url == self._url:
                return
            self._url = url
            ws = self._ws
            if url is not None and self._thread is None:  # the thread clears it under this lock as it ends
                self._thread = threading.Thread(target=self._hold, name="bulkhead-tunnel", daemon=True)
                self._thread.start()
        if ws is not None:
            ws.close()  # the thread dials the new URL, or ends

    def stop(self) -> None:
        self.want(None)

    # -- the control channel -------------------------------------------------------------------
    def _hold(self) -> None:
        failures = 0
        try:
            while (url := self._url) is not None:
                opened = time.monotonic()
                try:
                    ws = self.dial(url)
                    with self._lock:
                        self._ws = ws
                    try:
                        self._listen(ws, url)
                    finally:
                        ws.close()
                        with self._lock:
                            self._ws = None
                except AgentError as e:
                    if self._url is not None:
                        log.warning("remote sessions: control channel: %s", e)
                # A channel refused or dropped soon after it opened is a failure: back off (full jitter, up to 5 min),
                # so a refused device (disabled, its tenant's switch off) does not knock at the server's door.
                failures = 0 if time.monotonic() - opened > PING_SECONDS else failures + 1
                if self._url is not None:
                    time.sleep(
                        random.uniform(0.5, 2.0) if not failures else random.uniform(0, min(300.0, 2.0 ** min(failures, 9)))
                    )
        finally:
            with self._lock:
                self._thread = None

    def _listen(self, ws: WebSocket, url: str) -> None:
        ws.settimeout(PING_SECONDS)
        heard = time.monotonic()
        while self._url == url:
            try:
                msg = ws.recv()
            except TimeoutError:
                if time.monotonic() - heard > 2.5 * PING_SECONDS:
                    raise AgentError("the server did not answer pings") from None
                ws.send(control(ping=time.time()))
                continue
            if msg is None:
                return
            heard = time.monotonic()
            doc = parse_control(msg) if isinstance(msg, str) else {}
            if "error" in doc:
                log.warning("remote sessions: the server says: %s", doc["error"])
            if isinstance(doc.get("open"), str) and doc["open"].isalnum():
                threading.Thread(target=self._serve, args=(url, doc), name="bulkhead-session", daemon=True).start()

    # -- a connection --------------------------------------------------------------------------
    def _serve(self, url: str, doc: dict[str, object]) -> None:
        try:
            ws = self.dial(f"{url.rstrip('/')}/{doc['open']}")
        except AgentError as e:
            log.warning("remote sessions: connection %s: %s", doc["open"], e)
            return
        self.connections += 1
        ws.settimeout(None)  # a session may be quiet for long; the server's idle timeout ends it
        _keepalive(ws.sock)  # and a dead path (NAT, a server host gone) is noticed within about two minutes
        try:
            if doc.get("kind") == "shell":
                self._shell(ws)
            elif doc.get("kind") == "forward" and isinstance(doc.get("target"), str):
                self._forward(ws, str(doc["target"]))
            else:
                ws.send(control(error=f"this agent does not know the session kind {doc.get('kind')!r}"))
        except AgentError as e:
            log.info("remote sessions: connection %s ended: %s", doc["open"], e)
        except Exception:  # never a dead thread with a traceback: the session ends, the agent goes on
            log.exception("remote sessions: connection %s failed", doc["open"])
        finally:
            ws.close()

    def _shell(self, ws: WebSocket) -> None:
        env = {**os.environ, "TERM": "xterm-256color", "HOME": os.environ.get("HOME", "/root")}
        args = list(self.shell)
        try:
            pid, fd = pty.fork()
        except OSError as e:
            ws.send(control(error=f"the device cannot open a terminal: {e}"))
            return
        if pid == 0:  # the child: a login shell on the terminal, with the signals Python ignores back to their defaults
            try:
                for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                os.execvpe(args[0], args, env)
            finally:
                os._exit(127)
        log.info("remote sessions: shell %s started (pid %d)", self.shell[0], pid)
        reaped = threading.Event()

        def out() -> None:
            _send_all(ws, lambda: os.read(fd, MAX_MESSAGE_BYTES))  # EIO: the shell and all on its terminal ended
            _, status = os.waitpid(pid, 0)
            reaped.set()
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(AgentError):
                ws.send(control(exit=code))
            ws.close()

        reader = threading.Thread(target=out, name="bulkhead-shell-out", daemon=True)
        reader.start()
        try:
            while (msg := ws.recv()) is not None:
                if isinstance(msg, bytes):
                    os.write(fd, msg)
                elif len(msg) <= 1024 and (size := _size(parse_control(msg).get("resize"))) is not None:
                    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        except (AgentError, OSError):
            pass
        finally:
            if not reaped.is_set():  # the operator left: the shell's session ends as on a hang-up
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGHUP)
            reader.join(10)
            if not reader.is_alive():
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _forward(self, ws: WebSocket, target: str) -> None:
        host, _, port = target.rpartition(":")
        try:
            sock = socket.create_connection((host.strip("[]"), int(port)), 10)
        except (OSError, ValueError) as e:
            ws.send(control(error=f"the device cannot reach {target}: {e}"))
            return

        def out() -> None:
            _send_all(ws, lambda: sock.recv(MAX_MESSAGE_BYTES))
            ws.close()

        sock.settimeout(None)  # the target may be quiet for long (before the reader starts: it uses the socket too)
        reader = threading.Thread(target=out, name="bulkhead-forward-out", daemon=True)
        reader.start()
        try:
            while (msg := ws.recv()) is not None:
                if isinstance(msg, bytes):
                    sock.sendall(msg)
        except (AgentError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            reader.join(10)


def _size(value: object) -> tuple[int, int] | None:
    """A terminal size [cols, rows] as sent by the operator, bounded (None: not one)."""
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return None
    cols, rows = (max(1, min(int(v), 1000)) for v in value)
    return cols, rows


def _keepalive(sock: socket.socket) -> None:
    """TCP keepalive on a session's socket: 60 s idle, then 5 probes 10 s apart."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)


def _send_all(ws: WebSocket, read: Callable[[], bytes]) -> None:
    """Send what `read` gives until it gives nothing or fails (the end of the terminal or the socket), or the
    WebSocket fails."""
    while True:
        try:
            data = read()
        except OSError:
            return
        if not data:
            return
        try:
            ws.send(data)
        except AgentError:
            return
