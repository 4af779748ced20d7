"""`bulkhead device shell|forward|sessions` and `bulkhead remote-access`: remote sessions through the server
(docs/adr/0011). The shell is a real terminal (raw mode, the window's size, Ctrl-C reaches the remote program) and
exits with the remote shell's status, as ssh does."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from bulkhead.protocol.tunnel import MAX_MESSAGE_BYTES, control, parse_control

from .client import LimitOpt
from .errors import CliError
from .manage import JsonOpt, client, show

__all__ = ["device_forward", "device_recording", "device_sessions", "device_shell", "remote_access"]

_COLUMNS = ["id", "kind", "target", "status", "opened_by", "opened_at", "duration_seconds", "close_reason"]


@contextmanager
def _joined(ctx: typer.Context, session_id: int) -> Iterator[ClientConnection]:
    """The operator's side of one connection of the session, once the device has joined it."""
    obj: dict[str, Any] = ctx.find_root().obj or {}
    server = (obj.get("server") or "http://127.0.0.1:8080").rstrip("/")
    url = "ws" + server.removeprefix("http") + f"/api/v1/sessions/{session_id}/connect"
    headers = {"authorization": f"Bearer {obj['token']}"} if obj.get("token") else {}
    try:
        opened = connect(url, additional_headers=headers, open_timeout=15, max_size=4 * 1024 * 1024, ping_interval=20)
    except (OSError, WebSocketException, TimeoutError) as e:
        raise CliError(f"cannot open the session's connection at {url}: {e}") from None
    with opened as ws:
        try:
            first = ws.recv(timeout=45)
        except (WebSocketException, TimeoutError) as e:
            raise CliError(f"the session's connection at {url} broke before the device joined: {e}") from None
        doc = parse_control(first) if isinstance(first, str) else {}
        if "joined" not in doc:
            raise CliError(str(doc.get("error") or f"the server answered {first!r} instead of joining the device"))
        yield ws


def _window() -> tuple[int, int]:
    size = os.get_terminal_size(sys.stdout.fileno())
    return size.columns, size.lines


def device_shell(ctx: typer.Context, device: str) -> None:
    """Operator: a root shell on the device through the server (the tenant's remote access must be on); exits with
    the remote shell's exit status."""
    c = client(ctx)
    session = c.request("POST", f"/api/v1/devices/{device}/sessions", json={"kind": "shell"})
    with _joined(ctx, session["id"]) as ws:
        code = _terminal(ws)
    if code:
        raise typer.Exit(code if 0 < code < 256 else 255)


def _terminal(ws: ClientConnection) -> int:
    """Run the operator's terminal against the remote shell until it exits; its exit status."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    saved = termios.tcgetattr(sys.stdin.fileno()) if interactive else None
    code: int | None = None
    error: str | None = None

    def resize(*_: Any) -> None:
        with contextlib.suppress(Exception):
            ws.send(control(resize=list(_window())))

    def keys() -> None:
        while True:
            try:
                data = os.read(sys.stdin.fileno(), MAX_MESSAGE_BYTES)
            except OSError:
                return
            if not data:
                return  # input ended: the remote shell goes on until it exits
            try:
                ws.send(data)
            except WebSocketException:
                return

    try:
        if interactive:
            tty.setraw(sys.stdin.fileno(), termios.TCSADRAIN)  # keeps what was typed ahead
            signal.signal(signal.SIGWINCH, resize)
            resize()
        threading.Thread(target=keys, daemon=True).start()
        for msg in ws:
            if isinstance(msg, bytes):
                os.write(sys.stdout.fileno(), msg)
                continue
            doc = parse_control(msg)
            if "exit" in doc:
                code = int(doc["exit"])
            elif "error" in doc:
                error = str(doc["error"])
    except WebSocketException as e:
        error = f"the connection broke: {e}"
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
    if code is None:
        raise CliError(f"the session ended without the shell's exit status: {error or 'the device left'}")
    return code


def _pump(sock: socket.socket, ws: ClientConnection) -> None:
    def up() -> None:
        while True:
            try:
                data = sock.recv(MAX_MESSAGE_BYTES)
            except OSError:
                data = b""
            if not data:
                break
            try:
                ws.send(data)
            except WebSocketException:
                break
        ws.close()

    threading.Thread(target=up, daemon=True).start()
    try:
        for msg in ws:
            if isinstance(msg, bytes):
                sock.sendall(msg)
            elif "error" in (doc := parse_control(msg)):
                typer.echo(f"connection: {doc['error']}", err=True)
    except (WebSocketException, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        ws.close()


def device_forward(
    ctx: typer.Context,
    device: str,
    spec: str = typer.Argument(
        ..., metavar="LOCAL:HOST:PORT", help="listen on 127.0.0.1:LOCAL; connect to HOST:PORT from the device"
    ),
) -> None:
    """Operator: forward a local TCP port to HOST:PORT as the device reaches it (e.g. `8080:127.0.0.1:80`), until
    Ctrl-C; each local connection is a connection of one session."""
    local, sep, target = spec.partition(":")
    if not sep or not local.isdigit() or not 0 < int(local) < 65536 or ":" not in target:
        raise CliError(f"{spec!r} is not LOCAL:HOST:PORT (e.g. 8080:127.0.0.1:80)")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", int(local)))
    except OSError as e:
        raise CliError(f"cannot listen on 127.0.0.1:{local}: {e}") from None
    listener.listen(16)
    c = client(ctx)
    session = c.request("POST", f"/api/v1/devices/{device}/sessions", json={"kind": "forward", "target": target})
    typer.echo(f"forwarding 127.0.0.1:{local} to {target} on {device} (session {session['id']}); Ctrl-C ends it", err=True)

    def serve(sock: socket.socket) -> None:
        try:
            with _joined(ctx, session["id"]) as ws:
                _pump(sock, ws)
        except CliError as e:
            typer.echo(f"connection refused: {e}", err=True)
            sock.close()

    # Ctrl-C may be delivered to another thread (one blocked in a WebSocket's read): the main thread looks up from
    # accept() twice a second so that Python runs the handler there.
    listener.settimeout(0.5)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`, a service manager: end as at Ctrl-C, closing the session
    try:
        while True:
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(None)
            threading.Thread(target=serve, args=(sock,), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
        with contextlib.suppress(CliError):
            c.request("DELETE", f"/api/v1/sessions/{session['id']}", timeout=10)  # the sweep closes it otherwise


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def device_sessions(ctx: typer.Context, device: str, limit: int | None = LimitOpt, json: bool = JsonOpt) -> None:
    """Operator: the device's remote sessions, newest first: who, when, how long, why they ended."""
    show(client(ctx).pages(f"/api/v1/devices/{device}/sessions", limit=limit), json, _COLUMNS, f"sessions on {device}")


def remote_access(
    ctx: typer.Context,
    enable: bool | None = typer.Option(
        None, "--enable/--disable", help="Allow remote sessions on the tenant's devices, or stop them"
    ),
    idle_timeout: int | None = typer.Option(
        None, "--idle-timeout", min=5, max=86400, help="Seconds without traffic before a session closes"
    ),
    record: bool | None = typer.Option(None, "--record/--no-record", help="Keep each shell's output with its session"),
    json: bool = JsonOpt,
) -> None:
    """Show the tenant's remote-access switch, or (administrators) set it; --disable closes the open sessions."""
    c = client(ctx)
    if enable is None and idle_timeout is None and record is None:
        show(c.request("GET", "/api/v1/remote-access"), json)
        return
    current = c.request("GET", "/api/v1/remote-access")
    body = {"enabled": current["enabled"] if enable is None else enable, "idle_timeout_seconds": idle_timeout, "record": record}
    show(c.request("PUT", "/api/v1/remote-access", json=body), json)


def device_recording(
    ctx: typer.Context,
    session_id: int,
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the recording (asciicast v2: `asciinema play FILE`)"),
    json: bool = JsonOpt,
) -> None:
    """A recorded shell session's output (its owner and administrators)."""
    resp = client(ctx).raw("GET", f"/api/v1/sessions/{session_id}/recording")
    out.write_bytes(resp.content)
    show({"session": session_id, "file": str(out), "bytes": len(resp.content)}, json)
