"""Joins an operator's WebSocket to the one its device dials for it, in this process or through another's relay.

Devices hold a control channel to whichever process they reached (`control`). An operator's connection is a row
(services/remote_sessions.py) naming this process's relay; its insert marks the device in the change feed, and the
process holding that device's control channel (this one or another) announces it there. The device dials in for it
(`device`); when that lands in the operator's process the two WebSockets are joined here, otherwise the process it
landed in relays it to the operator's (`tunnel/relay.py`). The operator's side does the accounting (bytes each way),
the idle timeout and the session's closing; nothing is written per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from bulkhead.protocol.tunnel import SessionKind, control, parse_control

from ..errors import ServerError
from ..services.auth import Principal
from ..services.remote_sessions import JOIN_SECONDS, RemoteSessionService, Ticket
from .channel import Channel, RelayChannel, WebSocketChannel
from .recording import Recording
from .relay import Relay, dial

__all__ = ["TunnelHub", "splice"]

log = logging.getLogger(__name__)
_CHECK_SECONDS = 5.0  # how often a joined connection looks whether its session is still open
_CONTROL_MAX = 1024  # a longer text message is no control message: passed on, never parsed here


async def _copy(src: Channel, dst: Channel, moved: Callable[[str | bytes], None]) -> None:
    while (msg := await src.receive()) is not None:
        moved(msg)
        try:
            await dst.send(msg)
        except Exception:  # the other side went away: the pump ends
            return


async def splice(a: Channel, b: Channel, *extra: Coroutine[Any, Any, None]) -> None:
    """Pass messages both ways until either side ends (or one of `extra` returns); then close both."""
    tasks = [asyncio.ensure_future(c) for c in (_copy(a, b, lambda _m: None), _copy(b, a, lambda _m: None), *extra)]
    await _first(tasks)
    await a.close()
    await b.close()


async def _first(tasks: Sequence[asyncio.Future[None]]) -> set[asyncio.Future[None]]:
    """Wait for the first of `tasks` to finish, cancel the others; the finished ones."""
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    for t in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    return done


class TunnelHub:
    def __init__(self, sessions: RemoteSessionService, run_dir: Path, relay_host: str | None = None) -> None:
        self.sessions, self.run_dir = sessions, run_dir
        self.relay = Relay(run_dir, relay_host, self._relayed)
        self._controls: dict[int, WebSocketChannel] = {}  # device id -> its control channel here
        self._waiting: dict[str, tuple[str, asyncio.Future[Channel]]] = {}  # connection -> (key, the device's side)
        self._announced: dict[str, float] = {}  # connection -> when it was announced (each once)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await self.relay.start()
        except OSError as e:  # sessions still join when the device reaches this very process
            log.error("remote sessions: no relay for this process (%s): set BULKHEAD_TUNNEL_RELAY_HOST", e)
            return
        log.info("remote sessions: this process's relay is at %s", self.relay.address)

    async def stop(self) -> None:
        for ch in list(self._controls.values()):
            await ch.close()
        await self.relay.stop()

    # -- announcing connections on control channels -------------------------------------------
    def changed(self, device_ids: list[int]) -> None:
        """The change feed's listener (any thread): devices with a control channel here may have a new connection."""
        loop = self._loop
        mine = [d for d in device_ids if d in self._controls]
        if loop is not None and mine:
            loop.call_soon_threadsafe(self._spawn, mine)

    def _spawn(self, device_ids: list[int]) -> None:
        task = asyncio.ensure_future(self._announce(device_ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, device_ids: list[int]) -> None:
        try:
            gone = await run_in_threadpool(self.sessions.inactive, device_ids)
            tickets = await run_in_threadpool(self.sessions.pending, device_ids)
        except Exception:
            log.exception("reading the connections waiting for devices %s", device_ids[:10])
            return
        for device_id in gone:  # disabled, pending again or deleted: its tunnel closes
            ch = self._controls.pop(device_id, None)
            if ch is not None:
                await ch.close()
        now = time.monotonic()
        for conn, at in list(self._announced.items()):
            if now - at > 2 * JOIN_SECONDS:
                del self._announced[conn]
        for t in tickets:
            ch = self._controls.get(t.device_id)
            if ch is None or t.connection in self._announced:
                continue
            self._announced[t.connection] = now
            with contextlib.suppress(Exception):
                await ch.send(control(open=t.connection, kind=t.kind, target=t.target))

    async def control(self, who: Principal, ws: WebSocket) -> None:
        """A device's control channel: kept while it is open (answering its pings); the newest one counts."""
        assert who.device_id is not None
        ch = WebSocketChannel(ws)
        old = self._controls.get(who.device_id)
        self._controls[who.device_id] = ch
        if old is not None:
            await old.close()
        try:
            await self._announce([who.device_id])  # connections asked for while it was away
            while (msg := await ch.receive()) is not None:
                if isinstance(msg, str) and len(msg) <= _CONTROL_MAX and "ping" in parse_control(msg):
                    await ch.send(control(pong=time.time()))
        finally:
            if self._controls.get(who.device_id) is ch:
                del self._controls[who.device_id]
            await ch.close()

    def connected(self, device_id: int) -> bool:
        return device_id in self._controls

    # -- joining -------------------------------------------------------------------------------
    async def operator(self, who: Principal, session_id: int, ws: WebSocket) -> None:
        """An operator's connection of session `session_id`: wait for the device, then pump until either ends; the
        connection is accounted for (bytes, the session's end) however it ends."""
        ch = WebSocketChannel(ws)
        try:
            ticket = await run_in_threadpool(self.sessions.connect, who, session_id, self.relay.address)
        except ServerError as e:
            await _refuse(ch, e.message)
            return
        assert self._loop is not None
        future: asyncio.Future[Channel] = self._loop.create_future()
        self._waiting[ticket.connection] = (ticket.key, future)
        try:
            device = await asyncio.wait_for(asyncio.shield(future), JOIN_SECONDS)
        except TimeoutError:
            if future.done() and not future.cancelled():  # it came as the wait ended: let it go
                await future.result().close()
            why = f"the device did not dial in within {JOIN_SECONDS:.0f} s: it is offline, or its agent has no tunnel"
            await _refuse(ch, why)
            await run_in_threadpool(self.sessions.ended, ticket, 0, 0, why if ticket.kind == SessionKind.SHELL else None, False)
            return
        finally:
            self._waiting.pop(ticket.connection, None)
            if not future.done():
                future.cancel()
        counts: list[int] = [0, 0]
        reason: str | None = "the operator disconnected" if ticket.kind == SessionKind.SHELL else None
        rec = Recording(self.run_dir / "recordings" / f"{ticket.connection}.cast", ticket.session_id) if ticket.record else None
        try:
            try:
                await ch.send(control(joined=ticket.connection))
            except Exception:  # the operator left while waiting
                log.info("remote session %s: the operator left before the device joined", ticket.session_id)
                return
            counts, reason = await self._pump(ch, device, ticket, rec)
        except Exception:
            log.exception("remote session %s, connection %s", ticket.session_id, ticket.connection)
        finally:
            await ch.close()
            await device.close()
            with contextlib.suppress(Exception):
                await run_in_threadpool(self.sessions.ended, ticket, counts[0], counts[1], reason, True)
            if rec is not None:
                try:
                    await run_in_threadpool(self.sessions.keep_recording, ticket, *rec.finish())
                except Exception:
                    log.exception("keeping the recording of remote session %s", ticket.session_id)

    async def _pump(self, op: Channel, dev: Channel, t: Ticket, rec: Recording | None) -> tuple[list[int], str | None]:
        """Bytes both ways until one side ends, the connection idles past the tenant's timeout, or the session may
        not go on; (bytes to the device, bytes from it) and the session's closing reason (None: it stays open)."""
        counts, last = [0, 0], [time.monotonic()]
        ended: list[str] = []

        def moved(i: int) -> Callable[[str | bytes], None]:
            def count(msg: str | bytes) -> None:
                last[0] = time.monotonic()
                if isinstance(msg, bytes):
                    counts[i] += len(msg)
                    if rec is not None and i == 1:
                        rec.output(msg)
                elif len(msg) > _CONTROL_MAX:
                    return
                elif i == 1 and "exit" in (doc := parse_control(msg)):
                    ended.append(f"the shell exited with status {doc['exit']}")
                elif rec is not None and i == 0 and isinstance(size := parse_control(msg).get("resize"), list) and len(size) == 2:
                    rec.resize(*(int(v) if isinstance(v, int) else 0 for v in size))

            return count

        async def watch() -> None:
            while True:
                await asyncio.sleep(min(_CHECK_SECONDS, t.idle_seconds / 4))
                if time.monotonic() - last[0] > t.idle_seconds:
                    ended.append(f"idle for more than {t.idle_seconds} s")
                    break
                if (why := await run_in_threadpool(self.sessions.why_closed, t.session_id)) is not None:
                    ended.append(why)
                    break
            with contextlib.suppress(Exception):
                await op.send(control(error=f"closed: {ended[-1]}"))

        to_device = asyncio.ensure_future(_copy(op, dev, moved(0)))
        from_device = asyncio.ensure_future(_copy(dev, op, moved(1)))
        watcher = asyncio.ensure_future(watch())
        done = await _first([to_device, from_device, watcher])
        if not ended:
            ended.append("the operator disconnected" if to_device in done else "the device disconnected")
        # A shell ends with its connection; a forward's other connections go on (the sweep closes it when idle).
        return counts, ended[0] if t.kind == SessionKind.SHELL or ended[0] == "the session was closed" else None

    async def device(self, who: Principal, connection: str, ws: WebSocket) -> None:
        """The device dialed in for `connection`: joined here, or relayed to the process the operator waits in."""
        ch = WebSocketChannel(ws)
        try:
            ticket = await run_in_threadpool(self.sessions.claim, who, connection)
        except ServerError as e:
            await _refuse(ch, e.message)
            return
        except Exception:
            log.exception("claiming connection %s", connection)
            await _refuse(ch, "the server could not take the connection: see its log")
            return
        if ticket.relay == self.relay.address:
            waiting = self._waiting.get(connection)
            if waiting is None or waiting[1].done():
                await self._unclaimed(ch, ticket, "the operator is gone")
                return
            waiting[1].set_result(ch)
            await ch.done.wait()  # the operator's side pumps it
            return
        try:
            relayed = await dial(ticket.relay, connection, ticket.key)
        except (TimeoutError, OSError) as e:
            await self._unclaimed(ch, ticket, f"the server process the operator waits in is gone ({e})")
            return
        await splice(ch, relayed)

    async def _unclaimed(self, ch: WebSocketChannel, ticket: Ticket, why: str) -> None:
        """A claimed connection nobody takes: refused, and counted as ended (its session's `live` goes back)."""
        await _refuse(ch, why)
        with contextlib.suppress(Exception):
            await run_in_threadpool(self.sessions.ended, ticket, 0, 0, None, True)

    async def _relayed(self, connection: str, key: str, channel: RelayChannel) -> bool:
        waiting = self._waiting.get(connection)
        if waiting is None or not hmac.compare_digest(waiting[0].encode(), key.encode()) or waiting[1].done():
            return False
        waiting[1].set_result(channel)
        return True


async def _refuse(ch: WebSocketChannel, message: str) -> None:
    with contextlib.suppress(Exception):
        await ch.send(control(error=message))
    await ch.close()
