"""The agent's side of remote sessions (agent/tunnel.py) against a stand-in server built on the `websockets`
library: the control channel follows the state answer, each `open` is dialed, what cannot be served says why.
The shell and the port forward against the real server: tests/e2e/test_remote_sessions.py."""

from __future__ import annotations

import json
import queue
import threading
import time

from websockets.sync.server import ServerConnection, serve

from bulkhead.agent.tunnel import Tunnel
from bulkhead.agent.websocket import WebSocket
from tests.live import free_port


def _dial(url: str) -> WebSocket:
    return WebSocket.connect(url, {}, None, 5)


def test_the_control_channel_follows_the_state_answer_and_each_open_is_dialed() -> None:
    heard: queue.Queue[tuple[str, str]] = queue.Queue()
    closed_port = free_port()

    def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        if path == "/tunnel":
            heard.put(("control", ""))
            ws.send(json.dumps({"open": "c1", "kind": "forward", "target": f"127.0.0.1:{closed_port}"}))
            ws.send(json.dumps({"open": "c2", "kind": "teleport"}))
            for _ in ws:
                pass
            heard.put(("control closed", ""))
        else:
            heard.put((path, str(ws.recv(timeout=5))))

    srv = serve(handler, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"ws://127.0.0.1:{srv.socket.getsockname()[1]}/tunnel"
    tunnel = Tunnel(_dial)
    try:
        tunnel.want(url)
        got = {heard.get(timeout=10) for _ in range(3)}
        assert ("control", "") in got
        errors = {path: json.loads(msg)["error"] for path, msg in got if path.startswith("/tunnel/")}
        assert f"cannot reach 127.0.0.1:{closed_port}" in errors["/tunnel/c1"]
        assert "does not know the session kind 'teleport'" in errors["/tunnel/c2"]
        tunnel.want(None)  # the tenant turned remote access off: the channel is closed
        assert heard.get(timeout=10) == ("control closed", "")
    finally:
        tunnel.stop()
        srv.shutdown()


def test_the_device_makers_switch_keeps_the_tunnel_closed() -> None:
    dialed: list[str] = []

    def dial(url: str) -> WebSocket:
        dialed.append(url)
        raise AssertionError("dialed")

    tunnel = Tunnel(dial, enabled=False)
    tunnel.want("ws://127.0.0.1:9/tunnel")
    time.sleep(0.3)
    assert dialed == [] and tunnel._thread is None
