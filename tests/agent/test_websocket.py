"""The agent's WebSocket client (agent/websocket.py) against a server written by others (the `websockets` library):
masked frames it accepts, fragments, pings, large messages, a refused upgrade, a close."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from bulkhead.agent.errors import TunnelError
from bulkhead.agent.websocket import WebSocket


@contextmanager
def _server(handler: Callable[[ServerConnection], None], **kw: object) -> Iterator[str]:
    srv: Server = serve(handler, "127.0.0.1", 0, **kw)  # type: ignore[arg-type]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"ws://127.0.0.1:{srv.socket.getsockname()[1]}/device/v1/tunnel"
    finally:
        srv.shutdown()
        t.join(5)


def _echo(ws: ServerConnection) -> None:
    for msg in ws:
        ws.send(msg)


def test_text_and_binary_messages_go_both_ways_masked_as_the_server_requires() -> None:
    with _server(_echo) as url:
        ws = WebSocket.connect(url, {"authorization": "Bearer x"}, None, 5)
        big = bytes(range(256)) * 1024  # 256 KiB: a 64-bit length
        for msg in ("hello", b"\x00\x01\xff", b"x" * 200, big, ""):
            ws.send(msg)
            assert ws.recv() == msg
        ws.close()


def test_fragments_are_joined_and_pings_answered() -> None:
    answered = threading.Event()

    def handler(ws: ServerConnection) -> None:
        ws.recv()
        pong = ws.ping(b"are you there")
        ws.send([b"frag", b"ment", b"ed"])  # one message in three frames
        if pong.wait(5):
            answered.set()
        ws.send("after")

    with _server(handler) as url:
        ws = WebSocket.connect(url, {}, None, 5)
        ws.send("go")
        assert ws.recv() == b"fragmented"
        assert ws.recv() == "after"
        assert answered.is_set()
        ws.close()


def test_a_close_from_the_server_ends_reading() -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send("bye")
        ws.close()

    with _server(handler) as url:
        ws = WebSocket.connect(url, {}, None, 5)
        assert ws.recv() == "bye"
        assert ws.recv() is None


def test_a_refused_upgrade_says_what_the_server_answered() -> None:
    def refuse(conn: ServerConnection, _request: object) -> object:
        return conn.respond(403, "no tunnel for you\n")

    with _server(_echo, process_request=refuse) as url, pytest.raises(TunnelError, match=r"refused the WebSocket.*403"):
        WebSocket.connect(url, {}, None, 5)
    with pytest.raises(TunnelError, match="unusable tunnel URL"):
        WebSocket.connect("ftp://127.0.0.1/x", {}, None, 5)


def test_a_quiet_socket_times_out_without_losing_a_frame_in_flight() -> None:
    gate = threading.Event()

    def handler(ws: ServerConnection) -> None:
        ws.recv()
        gate.wait(5)
        ws.send("late")

    with _server(handler) as url:
        ws = WebSocket.connect(url, {}, None, 5)
        ws.settimeout(0.2)
        ws.send("x")
        with pytest.raises(TimeoutError):
            ws.recv()
        gate.set()
        ws.settimeout(5)
        assert ws.recv() == "late"
        ws.close()


def test_fragments_survive_a_timeout_between_them() -> None:
    gate = threading.Event()

    def handler(ws: ServerConnection) -> None:
        ws.recv()

        def parts() -> Iterator[bytes]:
            yield b"first-"
            gate.wait(5)
            yield b"second"

        ws.send(parts())  # one message whose second frame comes after the client's timeout

    with _server(handler) as url:
        ws = WebSocket.connect(url, {}, None, 5)
        ws.settimeout(0.3)
        ws.send("go")
        with pytest.raises(TimeoutError):
            ws.recv()
        gate.set()
        ws.settimeout(5)
        assert ws.recv() == b"first-second"
        ws.close()


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"\xc2\x02hi", "reserved bits"),  # RSV1 set, no extension agreed
        (b"\x82\x82abcdhi", "masked frame from the server"),
        (b"\x09\x02hi", "fragmented or oversized control frame"),  # a ping without FIN
        (b"\x01\x02hi\x02\x02hi", "new message began inside a fragmented one"),
        (b"\x81\x02\xff\xfe", "not UTF-8"),
    ],
)
def test_what_rfc_6455_says_to_fail_on_ends_the_connection(frame: bytes, why: str) -> None:
    """A raw server that answers the handshake and then sends one bad frame."""
    import base64
    import hashlib
    import socket

    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        request = conn.recv(4096).decode()
        key = next(
            line.split(":", 1)[1].strip() for line in request.split("\r\n") if line.lower().startswith("sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        head = f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}"
        conn.sendall(f"{head}\r\n\r\n".encode() + frame)
        conn.recv(4096)  # the client's Close
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ws = WebSocket.connect(f"ws://127.0.0.1:{srv.getsockname()[1]}/x", {}, None, 5)
    with pytest.raises(TunnelError, match=why):
        ws.recv()
    assert ws.closed
    t.join(5)
    srv.close()
