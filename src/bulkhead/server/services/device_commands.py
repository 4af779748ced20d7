"""Remote commands: an administrator runs a command line on a device or on every device of a group.

Administrators only (a command runs as root on the device), audited with its command line. A command is pending in
the device's state answer until the agent says it started it; the agent runs it once (a command the agent was
running when it stopped is reported `interrupted`, never run again), with a time limit, and reports its exit code
and output (the first and last 32 KiB). A pending command can be withdrawn. Statuses and their one transition
table: `bulkhead.protocol.commands`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bulkhead.protocol import DeviceStatus
from bulkhead.protocol.commands import MAX_OUTPUT_BYTES, CommandStatus, command_may

from ..command_models import DeviceCommand
from ..db import Database
from ..errors import Conflict, Forbidden, NotFound
from ..models import Device, DeviceGroup, utcnow
from . import audit
from .auth import Principal
from .command_rows import MAX_PENDING
from .device_list import json_array_has
from .devices import find_device
from .keyset import Page, Paged, keyset, paged

__all__ = ["CommandService", "command_json"]

COMMAND, LOGS = "command", "logs"
LOGS_SECONDS = 60
_OUTPUT_CHARS = MAX_OUTPUT_BYTES + 200  # the agent's bounded output (protocol/commands.py) and its cut marker


def command_json(c: DeviceCommand, device: str | None = None) -> dict[str, Any]:
    return {
        "id": c.id,
        "device_id": c.device_id,
        **({"device": device} if device is not None else {}),
        "kind": c.kind,
        "argv": c.argv,
        "timeout_seconds": c.timeout_seconds,
        "status": c.status,
        "exit_code": c.exit_code,
        "output": c.output,
        "output_truncated": c.output_truncated,
        "requested_by": c.requested_by,
        "requested_at": c.requested_at.isoformat(),
        "started_at": c.started_at.isoformat() if c.started_at else None,
        "finished_at": c.finished_at.isoformat() if c.finished_at else None,
    }


def _runnable(dev: Device) -> str | None:
    """Why the device cannot run a command (None: it can)."""
    if dev.enrolled_with is None:  # as for a factory reset (services/device_reset.py)
        return f"device '{dev.name}' has no Bulkhead agent (provisioned or DDI): it cannot run commands"
    if dev.status != DeviceStatus.ACTIVE:
        return f"device '{dev.name}' is {dev.status}: it would never hear of the command"
    return None


class CommandService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def run(self, who: Principal, ref: str, argv: Sequence[str], timeout: int) -> dict[str, Any]:
        """Queue `argv` for one device (admins: it runs as root there)."""
        who.require("admin")
        return self._queue(who, ref, COMMAND, argv, timeout, {"argv": list(argv), "timeout_seconds": timeout})

    def logs(self, who: Principal, ref: str, unit: str | None, since: str | None, lines: int) -> dict[str, Any]:
        """Queue a read of the device's journal (operators): `journalctl` with these checked options only, the newest
        `lines` lines of the unit (or of everything) since the time given."""
        who.require("operator")
        argv = ["journalctl", "--no-pager", "--output=short-iso", f"--lines={lines}"]
        argv += [f"--unit={unit}"] if unit else []
        argv += [f"--since={since}"] if since else []
        return self._queue(who, ref, LOGS, argv, LOGS_SECONDS, {"unit": unit, "since": since, "lines": lines})

    def _queue(
        self, who: Principal, ref: str, kind: str, argv: Sequence[str], timeout: int, details: dict[str, Any]
    ) -> dict[str, Any]:
        tid = who.require_tenant()
        with self.db.session() as s:
            dev = find_device(s, tid, ref)
            if (why := _runnable(dev)) is not None:
                raise Conflict(why)
            self._room(s, [dev])
            cmd = self._add(s, who, dev, argv, timeout, kind)
            audit.record(s, who, "device.command" if kind == COMMAND else "device.logs", dev.name, **details)
            s.flush()
            return command_json(cmd, dev.name)

    def run_group(self, who: Principal, group: str, argv: Sequence[str], timeout: int) -> list[dict[str, Any]]:
        """Queue `argv` for every active device with the agent in the group; the others are left out."""
        who.require("admin")
        tid = who.require_tenant()
        with self.db.session() as s:
            if s.scalar(select(DeviceGroup.id).where(DeviceGroup.tenant_id == tid, DeviceGroup.name == group)) is None:
                raise NotFound(f"group '{group}' does not exist")
            devices = [
                d
                for d in s.scalars(
                    select(Device).where(Device.tenant_id == tid, json_array_has(s, Device.groups, [group])).order_by(Device.id)
                )
                if _runnable(d) is None
            ]
            if not devices:
                raise Conflict(f"group '{group}' has no active device with the Bulkhead agent to run the command")
            self._room(s, devices)
            cmds = [(d, self._add(s, who, d, argv, timeout)) for d in devices]
            audit.record(s, who, "group.command", group, argv=list(argv), timeout_seconds=timeout, devices=len(devices))
            s.flush()
            return [command_json(c, d.name) for d, c in cmds]

    def _room(self, s: Session, devices: list[Device]) -> None:
        ids = [d.id for d in devices]
        rows = s.execute(
            select(DeviceCommand.device_id, func.count())
            .where(DeviceCommand.device_id.in_(ids), DeviceCommand.status == CommandStatus.PENDING)
            .group_by(DeviceCommand.device_id)
        ).tuples()
        counts = {device_id: n for device_id, n in rows}
        over = [d.name for d in devices if counts.get(d.id, 0) >= MAX_PENDING]
        if over:
            raise Conflict(
                f"{', '.join(over[:5])}{' and others' if len(over) > 5 else ''} already have {MAX_PENDING} commands "
                "pending: wait until the devices ran them, or withdraw some"
            )

    @staticmethod
    def _add(s: Session, who: Principal, dev: Device, argv: Sequence[str], timeout: int, kind: str = "command") -> DeviceCommand:
        cmd = DeviceCommand(
            tenant_id=dev.tenant_id,
            device_id=dev.id,
            kind=kind,
            argv=list(argv),
            timeout_seconds=timeout,
            status=CommandStatus.PENDING,
            output_truncated=False,
            requested_by=f"{who.kind}:{who.name}",
            requested_at=utcnow(),
        )
        s.add(cmd)
        return cmd

    def cancel(self, who: Principal, command_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            cmd, name = self._own(s, who, command_id, lock=True)
            if not command_may(cmd.status, CommandStatus.CANCELED):
                raise Conflict(f"command {command_id} is {cmd.status}: only a pending command can be withdrawn")
            cmd.status, cmd.finished_at = CommandStatus.CANCELED, utcnow()
            audit.record(s, who, "device.command_cancel", name, command_id=command_id)
            return command_json(cmd, name)

    def show(self, who: Principal, command_id: int) -> dict[str, Any]:
        with self.db.read() as s:
            cmd, name = self._own(s, who, command_id)
            return command_json(cmd, name)

    def list_for_device(self, who: Principal, ref: str, page: Page) -> Paged[dict[str, Any]]:
        """The device's commands, newest first (with their output): an operator sees the journal reads only."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.read() as s:
            dev = find_device(s, tid, ref)
            q = select(DeviceCommand).where(DeviceCommand.device_id == dev.id)
            if not who.has("admin"):
                q = q.where(DeviceCommand.kind == LOGS)
            rows = list(s.scalars(keyset(q, [DeviceCommand.id], page, descending=True)))
            return paged(rows, page, lambda c: (c.id,), lambda c: command_json(c, dev.name))

    def _own(self, s: Session, who: Principal, command_id: int, lock: bool = False) -> tuple[DeviceCommand, str]:
        tid = who.require_tenant()
        q = select(DeviceCommand, Device.name).join(Device, Device.id == DeviceCommand.device_id)
        q = q.where(DeviceCommand.id == command_id, DeviceCommand.tenant_id == tid)
        row = s.execute(q.with_for_update(of=DeviceCommand) if lock else q).first()
        if row is None:
            raise NotFound(f"command {command_id} does not exist")
        who.require("admin" if row[0].kind == COMMAND else "operator")  # a command's output may hold anything
        return row[0], row[1]

    # -- the device's side -------------------------------------------------------------
    def report(
        self, who: Principal, command_id: int, status: str, exit_code: int | None, output: str | None, truncated: bool
    ) -> dict[str, Any]:
        """The agent says it started the command, or how it ended. A report the table does not allow (a repeat of
        a lost answer, a command withdrawn meanwhile) changes nothing and says so."""
        if who.kind != "device" or who.device_id is None:
            raise Forbidden("this endpoint is for devices")
        if who.device_status != DeviceStatus.ACTIVE:
            raise Forbidden(f"device '{who.name}' is {who.device_status}: an operator must enable or approve it first")
        with self.db.session() as s:
            cmd = s.scalar(
                select(DeviceCommand)
                .where(DeviceCommand.id == command_id, DeviceCommand.device_id == who.device_id)
                .with_for_update()
            )
            if cmd is None:
                raise NotFound(f"command {command_id} is not this device's")
            if cmd.status == status:
                return {"id": cmd.id, "status": cmd.status}  # a repeat (its answer was lost)
            if not command_may(cmd.status, status):
                raise Conflict(f"command {command_id} is {cmd.status}: it cannot become {status}")
            now = utcnow()
            cmd.status = status
            if status == CommandStatus.RUNNING:
                cmd.started_at = now
            else:
                cmd.finished_at = now
                cmd.exit_code = exit_code if status == CommandStatus.EXITED else None
                cmd.output = (output or "")[:_OUTPUT_CHARS]
                cmd.output_truncated = truncated or len(output or "") > _OUTPUT_CHARS
            return {"id": cmd.id, "status": cmd.status}
