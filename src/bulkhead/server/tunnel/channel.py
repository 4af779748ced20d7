"""One side of a joined connection, whatever carries it: a WebSocket in this process, or the relay from another."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["Channel", "RelayChannel", "WebSocketChannel", "read_frame", "write_frame"]

Message = str | bytes
_BINARY, _TEXT = 0, 1
_HEADER = struct.Struct("!BI")
MAX_RELAY_FRAME = 1024 * 1024


class Channel(Protocol):
    done: asyncio.Event  # set once the channel is closed; its carrier's handler returns then

    async def receive(self) -> Message | None:
        """The next message, or None once the other end closed."""
        ...

    async def send(self, message: Message) -> None: ...

    async def close(self) -> None: ...


class WebSocketChannel:
    def __init__(self, ws: WebSocket) -> None:
        self.ws, self.done = ws, asyncio.Event()

    async def receive(self) -> Message | None:
        try:
            msg = await self.ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if msg["type"] == "websocket.disconnect":
            self.done.set()
            return None
        if msg.get("bytes") is not None:
            return bytes(msg["bytes"])
        return str(msg.get("text") or "")

    async def send(self, message: Message) -> None:
        if isinstance(message, bytes):
            await self.ws.send_bytes(message)
        else:
            await self.ws.send_text(message)

    async def close(self) -> None:
        if not self.done.is_set():
            self.done.set()
            with contextlib.suppress(Exception):
                await self.ws.close()


async def read_frame(reader: asyncio.StreamReader) -> Message | None:
    """A relayed message (type, length, payload), or None at the end of the stream or on a malformed frame."""
    try:
        kind, size = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        if size > MAX_RELAY_FRAME or kind not in (_BINARY, _TEXT):
            return None
        payload = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return payload if kind == _BINARY else payload.decode("utf-8", "replace")


async def write_frame(writer: asyncio.StreamWriter, message: Message) -> None:
    data = message if isinstance(message, bytes) else message.encode()
    writer.write(_HEADER.pack(_BINARY if isinstance(message, bytes) else _TEXT, len(data)) + data)
    await writer.drain()


class RelayChannel:
    """The device's side when it dialed another server process, which relays it here over a socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.done = reader, writer, asyncio.Event()

    async def receive(self) -> Message | None:
        msg = await read_frame(self.reader)
        if msg is None:
            self.done.set()
        return msg

    async def send(self, message: Message) -> None:
        await write_frame(self.writer, message)

    async def close(self) -> None:
        if not self.done.is_set():
            self.done.set()
            with contextlib.suppress(Exception):
                self.writer.close()
                await self.writer.wait_closed()
