"""The relay between server processes: the process holding an operator's side listens, the one the device dialed
connects to it and passes the device's messages through (a Unix socket on one host, TCP across hosts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from .channel import RelayChannel

__all__ = ["Relay", "dial"]

_HELLO_MAX = 200
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes with its NUL
log = logging.getLogger(__name__)


class Relay:
    """This process's relay listener; `accept(connection, key, channel)` takes a relayed device side (False: refused)."""

    def __init__(self, run_dir: Path, host: str | None, accept: Callable[[str, str, RelayChannel], Awaitable[bool]]) -> None:
        self.run_dir, self.host, self._accept = run_dir, host, accept
        self.address = ""
        self._server: asyncio.AbstractServer | None = None
        self._path: Path | None = None

    async def start(self) -> None:
        if self.host:
            self._server = await asyncio.start_server(self._handle, self.host, 0)
            port = self._server.sockets[0].getsockname()[1]
            self.address = f"tcp:{self.host}:{port}"
            return
        name = f"tunnel-{os.getpid()}-{secrets.token_hex(4)}.sock"
        path = self.run_dir / name
        if len(os.fsencode(path)) < _UNIX_PATH_MAX:
            self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._path = path
            self._server = await asyncio.start_unix_server(self._handle, str(path))
            os.chmod(path, 0o600)
            self.address = f"unix:{path}"
        else:  # a data directory too deep for a socket's path: Linux's abstract namespace (the key guards it)
            self._server = await asyncio.start_unix_server(self._handle, "\0bulkhead-" + name)
            self.address = "unix:@bulkhead-" + name

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = RelayChannel(reader, writer)
        try:
            hello = (await asyncio.wait_for(reader.readuntil(b"\n"), 10))[:-1].decode("ascii", "replace")
            connection, _, key = hello.partition(" ")
            if len(hello) < _HELLO_MAX and await self._accept(connection, key, channel):
                await channel.done.wait()  # the operator's side pumps it; hold the socket until that ends
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:  # a stray peer must not leave an unhandled error in the event loop
            log.exception("the tunnel relay refused a connection")
        finally:
            await channel.close()


async def dial(address: str, connection: str, key: str) -> RelayChannel:
    """Connect to the relay of the process at `address` for `connection` (OSError when it is gone)."""
    scheme, _, rest = address.partition(":")
    if scheme == "unix":
        path = "\0" + rest[1:] if rest.startswith("@") else rest
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 10)
    elif scheme == "tcp":
        host, _, port = rest.rpartition(":")
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 10)
    else:
        raise OSError(f"unknown relay address {address!r}")
    writer.write(f"{connection} {key}\n".encode())
    await writer.drain()
    return RelayChannel(reader, writer)
