"""Remote sessions: an operator's shell or port forward on a device, through the server (docs/adr/0011).

Off per tenant until an administrator turns it on; operators and administrators open sessions, viewers never. A
session is audited when it opens and when it closes (who, how long, how many bytes each way). Each of its
connections is a row while it is set up: the server process holding the operator's WebSocket waits for the device
to dial in with the row's id (the row names that process's relay address); the device may claim a connection once,
within `JOIN_SECONDS`. A session closes when the operator ends it, when its shell exits, when nothing joined or
moved on it for the tenant's idle timeout, or when the tenant's switch goes off. The bytes go through the tunnel
hub (`server/tunnel`), not through here.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bulkhead.protocol import DeviceStatus
from bulkhead.protocol.tunnel import SessionKind, SessionStatus, session_may

from ..db import Database
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..models import Device, Tenant, utcnow
from ..store import ArtifactStore
from ..tunnel_models import RemoteSession, TunnelConnection
from . import audit
from .auth import Principal
from .devices import find_device
from .keyset import Page, Paged, keyset, paged

__all__ = ["DEFAULT_IDLE_SECONDS", "JOIN_SECONDS", "RemoteSessionService", "Ticket", "parse_target"]

DEFAULT_IDLE_SECONDS = 15 * 60
MIN_IDLE_SECONDS, MAX_IDLE_SECONDS = 5, 24 * 3600
JOIN_SECONDS = 30.0  # a device that has not dialed in by then will not: the operator is told so
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\])$"
)


def parse_target(target: str) -> tuple[str, int]:
    """`host:port` as the device reaches it (a name, an IPv4 address or a bracketed IPv6 one), or Invalid."""
    host, sep, port = target.rpartition(":")
    if not sep or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(f"target {target!r} is not host:port (e.g. 127.0.0.1:8080, [::1]:22, app.local:80)")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Ticket:
    """What the tunnel hub needs to join one connection: whose, to what, and for how long it may stay idle."""

    connection: str
    session_id: int
    tenant_id: int
    device_id: int
    kind: str
    target: str | None
    idle_seconds: int
    relay: str = ""
    key: str = ""
    record: bool = False  # the tenant records shells (server/tunnel/recording.py)


def access_json(tenant: Tenant) -> dict[str, Any]:
    cfg = tenant.remote_access or {}
    return {
        "enabled": bool(cfg.get("enabled")),
        "idle_timeout_seconds": int(cfg.get("idle_timeout_seconds") or DEFAULT_IDLE_SECONDS),
        "record": bool(cfg.get("record")),
    }


def session_json(r: RemoteSession, device: str) -> dict[str, Any]:
    return {
        "id": r.id,
        "device_id": r.device_id,
        "device": device,
        "kind": r.kind,
        "target": r.target,
        "status": r.status,
        "opened_by": r.opened_by,
        "opened_at": r.opened_at.isoformat(),
        "closed_at": r.closed_at.isoformat() if r.closed_at else None,
        "close_reason": r.close_reason,
        "duration_seconds": round(((r.closed_at or utcnow()) - r.opened_at).total_seconds(), 1),
        "connections": r.connections,
        "bytes_to_device": r.bytes_to_device,
        "bytes_from_device": r.bytes_from_device,
        "recording_bytes": r.recording_bytes,
    }


def _server(tenant_id: int) -> Principal:
    return Principal(kind="system", name="server", tenant_id=tenant_id)


class RemoteSessionService:
    def __init__(self, db: Database, store: ArtifactStore | None = None) -> None:
        self.db, self.store = db, store

    # -- the tenant's switch -------------------------------------------------------------------
    def access(self, who: Principal) -> dict[str, Any]:
        who.require("viewer")
        with self.db.read() as s:
            return access_json(s.get_one(Tenant, who.require_tenant()))

    def enabled_for(self, tenant_id: int) -> bool:
        with self.db.read() as s:
            return bool(access_json(s.get_one(Tenant, tenant_id))["enabled"])

    def configure(
        self, who: Principal, enabled: bool, idle_timeout_seconds: int | None, record: bool | None = None
    ) -> dict[str, Any]:
        """Turn remote sessions on or off for the tenant, and their recording (administrators); off closes the open
        ones."""
        who.require("admin")
        if idle_timeout_seconds is not None and not MIN_IDLE_SECONDS <= idle_timeout_seconds <= MAX_IDLE_SECONDS:
            raise Invalid(f"idle_timeout_seconds must be {MIN_IDLE_SECONDS} to {MAX_IDLE_SECONDS}")
        with self.db.session() as s:
            tenant = s.get_one(Tenant, who.require_tenant(), with_for_update=True)
            before = access_json(tenant)
            idle = idle_timeout_seconds or before["idle_timeout_seconds"]
            keep = before["record"] if record is None else record
            tenant.remote_access = {"enabled": enabled, "idle_timeout_seconds": idle, "record": keep}
            if not enabled:
                for r in s.scalars(
                    select(RemoteSession).where(RemoteSession.tenant_id == tenant.id, RemoteSession.status == SessionStatus.OPEN)
                ):
                    self._close(s, r, "remote access was turned off for the tenant", who)
            audit.record(s, who, "tenant.remote_access", tenant.name, enabled=enabled, idle_timeout_seconds=idle, record=keep)
            return access_json(tenant)

    # -- the operator's side -------------------------------------------------------------------
    def open(self, who: Principal, ref: str, kind: str, target: str | None) -> dict[str, Any]:
        who.require("operator")
        tid = who.require_tenant()
        if kind == SessionKind.FORWARD:
            if target is None:
                raise Invalid("a port forward needs its target: host:port as the device reaches it")
            parse_target(target)
        elif target is not None:
            raise Invalid("a shell has no target")
        with self.db.session() as s:
            self._enabled(s, tid)
            dev = find_device(s, tid, ref)
            if dev.enrolled_with is None:
                raise Conflict(f"device '{dev.name}' has no Bulkhead agent (provisioned or DDI): it has no tunnel")
            if dev.status != DeviceStatus.ACTIVE:
                raise Conflict(f"device '{dev.name}' is {dev.status}: enable or approve it first")
            now = utcnow()
            r = RemoteSession(
                tenant_id=tid, device_id=dev.id, kind=kind, target=target, status=SessionStatus.OPEN,
                opened_by=f"{who.kind}:{who.name}", opened_at=now, active_at=now, connections=0, live=0,
                bytes_to_device=0, bytes_from_device=0,
            )  # fmt: skip
            s.add(r)
            s.flush()
            audit.record(s, who, "device.session_open", dev.name, session=r.id, kind=kind, target=target)
            return session_json(r, dev.name)

    def connect(self, who: Principal, session_id: int, relay: str) -> Ticket:
        """A new connection of an open session, waiting at `relay` (this process) for the device to dial in."""
        with self.db.session() as s:
            r, name = self._own(s, who, session_id, lock=True)
            idle = self._enabled(s, r.tenant_id)
            record = access_json(s.get_one(Tenant, r.tenant_id))["record"] and r.kind == SessionKind.SHELL
            self._expire(s, r, idle)
            if r.status != SessionStatus.OPEN:
                raise Conflict(f"session {session_id} is closed ({r.close_reason}): open a new one")
            if r.opened_by != f"{who.kind}:{who.name}" and not who.has("admin"):
                raise Forbidden(f"session {session_id} was opened by {r.opened_by}: open a session of your own")
            waiting = s.scalar(select(func.count()).select_from(TunnelConnection).where(TunnelConnection.session_id == r.id))
            if r.kind == SessionKind.SHELL and (r.connections or waiting):
                raise Conflict(f"session {session_id} is a shell that was already joined: open a new one")
            dev = s.get_one(Device, r.device_id)
            if dev.status != DeviceStatus.ACTIVE:
                raise Conflict(f"device '{name}' is {dev.status}: enable or approve it first")
            c = TunnelConnection(
                id=secrets.token_hex(16), session_id=r.id, tenant_id=r.tenant_id, device_id=r.device_id,
                relay=relay, key=secrets.token_hex(16), created_at=utcnow(),
            )  # fmt: skip
            s.add(c)
            return Ticket(c.id, r.id, r.tenant_id, r.device_id, r.kind, r.target, idle, relay, c.key, record)

    def keep_recording(self, ticket: Ticket, path: Path, sha256: str, size: int) -> None:
        """The shell's recording into the store, named on its session."""
        if self.store is None:
            path.unlink(missing_ok=True)
            return
        self.store.commit(self.store.stage_file(path), sha256)
        with self.db.session() as s:
            r = s.get(RemoteSession, ticket.session_id, with_for_update=True)
            if r is not None:
                r.recording_sha256, r.recording_bytes = sha256, size

    def recording(self, who: Principal, session_id: int) -> tuple[str, str]:
        """(sha256, file name) of the session's recording: its owner's and administrators' to read."""
        with self.db.read() as s:
            r, _name = self._own(s, who, session_id)
            if r.opened_by != f"{who.kind}:{who.name}" and not who.has("admin"):
                raise Forbidden(f"session {session_id} was opened by {r.opened_by}: its recording is theirs and administrators'")
            if r.recording_sha256 is None:
                raise NotFound(f"session {session_id} has no recording (the tenant records shells with `remote-access --record`)")
            return r.recording_sha256, f"session-{session_id}.cast"

    def close(self, who: Principal, session_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            r, name = self._own(s, who, session_id, lock=True)
            if r.status == SessionStatus.OPEN:
                self._close(s, r, f"closed by {who.kind}:{who.name}", who)
            return session_json(r, name)

    def show(self, who: Principal, session_id: int) -> dict[str, Any]:
        with self.db.read() as s:
            r, name = self._own(s, who, session_id)
            return session_json(r, name)

    def list_for_device(self, who: Principal, ref: str, page: Page) -> Paged[dict[str, Any]]:
        who.require("operator")
        with self.db.read() as s:
            dev = find_device(s, who.require_tenant(), ref)
            q = select(RemoteSession).where(RemoteSession.device_id == dev.id)
            rows = list(s.scalars(keyset(q, [RemoteSession.id], page, descending=True)))
            return paged(rows, page, lambda r: (r.id,), lambda r: session_json(r, dev.name))

    # -- the device's side and the hub's accounting --------------------------------------------
    def pending(self, device_ids: list[int]) -> list[Ticket]:
        """Connections of these devices waiting for them to dial in (the hub announces them on the control channel)."""
        since = utcnow() - dt.timedelta(seconds=JOIN_SECONDS)
        with self.db.read() as s:
            q = select(TunnelConnection, RemoteSession.kind, RemoteSession.target).join(RemoteSession)
            q = q.where(
                TunnelConnection.device_id.in_(device_ids),
                TunnelConnection.joined_at.is_(None),
                TunnelConnection.created_at > since,
            )
            return [
                Ticket(c.id, c.session_id, c.tenant_id, c.device_id, kind, target, 0, c.relay, c.key)
                for c, kind, target in s.execute(q).tuples()
            ]

    def claim(self, who: Principal, connection: str) -> Ticket:
        """The device dialed in for `connection`: once, while it waits, and only its own."""
        if who.kind != "device" or who.device_id is None:
            raise Forbidden("this endpoint is for devices")
        if who.device_status != DeviceStatus.ACTIVE:
            raise Forbidden(f"device '{who.name}' is {who.device_status}")
        now = utcnow()
        with self.db.session() as s:
            taken = s.execute(  # type: ignore[attr-defined]  # an UPDATE's CursorResult
                update(TunnelConnection)
                .where(
                    TunnelConnection.id == connection,
                    TunnelConnection.device_id == who.device_id,
                    TunnelConnection.joined_at.is_(None),
                    TunnelConnection.created_at > now - dt.timedelta(seconds=JOIN_SECONDS),
                )
                .values(joined_at=now)
            ).rowcount
            c = s.get(TunnelConnection, connection) if taken else None
            if c is None:
                raise NotFound(f"connection {connection} is not waiting for this device (joined, expired or never asked)")
            r = s.get_one(RemoteSession, c.session_id, with_for_update=True)
            if r.status != SessionStatus.OPEN:
                raise Conflict(f"session {r.id} is closed")
            r.connections += 1
            r.live += 1
            r.active_at = now
            return Ticket(c.id, r.id, r.tenant_id, r.device_id, r.kind, r.target, 0, c.relay, c.key)

    def ended(self, ticket: Ticket, to_device: int, from_device: int, reason: str | None, joined: bool) -> None:
        """A connection ended (`reason` closes its session: a shell's end, the idle timeout); its bytes counted."""
        with self.db.session() as s:
            s.execute(delete(TunnelConnection).where(TunnelConnection.id == ticket.connection))
            r = s.get(RemoteSession, ticket.session_id, with_for_update=True)
            if r is None:
                return
            r.bytes_to_device += to_device
            r.bytes_from_device += from_device
            r.live = max(0, r.live - (1 if joined else 0))
            r.active_at = utcnow()
            if reason is not None and r.status == SessionStatus.OPEN:
                self._close(s, r, reason, _server(r.tenant_id))

    def why_closed(self, session_id: int) -> str | None:
        """Why a joined connection of the session must end now (None: it may go on)."""
        with self.db.read() as s:
            row = s.execute(
                select(RemoteSession.status, Device.status, Device.name)
                .join(Device, Device.id == RemoteSession.device_id)
                .where(RemoteSession.id == session_id)
            ).first()
        if row is None or row[0] != SessionStatus.OPEN:
            return "the session was closed"
        return f"device '{row[2]}' is {row[1]}" if row[1] != DeviceStatus.ACTIVE else None

    def inactive(self, device_ids: list[int]) -> list[int]:
        """Which of these devices are no longer active (disabled, pending, deleted): their tunnels close."""
        with self.db.read() as s:
            active = set(s.scalars(select(Device.id).where(Device.id.in_(device_ids), Device.status == DeviceStatus.ACTIVE)))
        return [d for d in device_ids if d not in active]

    def sweep(self, now: dt.datetime | None = None) -> int:
        """Every minute (jobs.py): sessions with nothing joined for their tenant's idle timeout are closed (a forward
        whose CLI was killed, a session whose connection never came), and connections never joined are forgotten."""
        now = now or utcnow()
        closed = 0
        with self.db.session() as s:
            s.execute(delete(TunnelConnection).where(
                TunnelConnection.joined_at.is_(None), TunnelConnection.created_at < now - dt.timedelta(seconds=2 * JOIN_SECONDS)
            ))  # fmt: skip
            idle = {t.id: access_json(t)["idle_timeout_seconds"] for t in s.scalars(select(Tenant))}
            q = select(RemoteSession).where(RemoteSession.status == SessionStatus.OPEN, RemoteSession.live == 0)
            for r in s.scalars(q.with_for_update()):
                seconds = idle.get(r.tenant_id, DEFAULT_IDLE_SECONDS)
                if now - r.active_at > dt.timedelta(seconds=seconds):
                    self._close(s, r, f"idle for more than {seconds} s", _server(r.tenant_id))
                    closed += 1
        return closed

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _enabled(s: Session, tenant_id: int) -> int:
        cfg = access_json(s.get_one(Tenant, tenant_id))
        if not cfg["enabled"]:
            raise Forbidden(
                "remote access is off for this tenant: an administrator turns it on with "
                "`bulkhead remote-access --enable` (PUT /api/v1/remote-access)"
            )
        return int(cfg["idle_timeout_seconds"])

    def _expire(self, s: Session, r: RemoteSession, idle: int) -> None:
        if r.status == SessionStatus.OPEN and r.live == 0 and utcnow() - r.active_at > dt.timedelta(seconds=idle):
            self._close(s, r, f"idle for more than {idle} s", _server(r.tenant_id))

    @staticmethod
    def _close(s: Session, r: RemoteSession, reason: str, who: Principal) -> None:
        assert session_may(r.status, SessionStatus.CLOSED)
        r.status, r.closed_at, r.close_reason = SessionStatus.CLOSED, utcnow(), reason[:200]
        name = s.scalar(select(Device.name).where(Device.id == r.device_id)) or str(r.device_id)
        seconds = round((r.closed_at - r.opened_at).total_seconds(), 1)
        audit.record(
            s, who, "device.session_close", name, tenant_id=r.tenant_id, session=r.id, kind=r.kind, reason=r.close_reason,
            duration_seconds=seconds, bytes_to_device=r.bytes_to_device, bytes_from_device=r.bytes_from_device,
        )  # fmt: skip

    @staticmethod
    def _own(s: Session, who: Principal, session_id: int, lock: bool = False) -> tuple[RemoteSession, str]:
        who.require("operator")
        q = select(RemoteSession, Device.name).join(Device, Device.id == RemoteSession.device_id)
        q = q.where(RemoteSession.id == session_id, RemoteSession.tenant_id == who.require_tenant())
        row = s.execute(q.with_for_update(of=RemoteSession) if lock else q).first()
        if row is None:
            raise NotFound(f"session {session_id} does not exist")
        return row[0], row[1]
