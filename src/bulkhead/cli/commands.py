"""`bulkhead device run|logs|commands|command`: remote commands on devices (administrators) and their journal
(operators); audited."""

from __future__ import annotations

import time
from typing import Any

import typer

from .client import LimitOpt
from .errors import EXIT_REMOTE, CliError
from .manage import JsonOpt, client, show

__all__ = ["command_show", "device_commands", "device_logs", "device_run"]

_FINISHED = {"exited", "timed_out", "failed", "interrupted", "canceled"}
_COLUMNS = ["id", "device", "status", "exit_code", "argv", "requested_at", "finished_at"]


def _print(cmd: dict[str, Any]) -> None:
    typer.echo(
        f"{cmd['device']}: command {cmd['id']} {cmd['status']}"
        + (f", exit code {cmd['exit_code']}" if cmd["exit_code"] is not None else "")
    )
    if cmd.get("output"):
        typer.echo(cmd["output"].rstrip("\n"))


def device_run(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="The device (name or id), or with --group the group"),
    argv: list[str] = typer.Argument(..., help="The program and its arguments (after --), run without a shell"),
    group: bool = typer.Option(False, "--group", help="TARGET is a group: run on each of its active devices"),
    timeout: int = typer.Option(60, "--timeout", min=1, max=3600, help="Seconds until the device kills the command"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the results (the device runs it at its next poll)"),
    wait_seconds: int = typer.Option(900, "--wait-seconds", min=1, help="How long to wait for the results"),
    json: bool = JsonOpt,
) -> None:
    """Admin: run a command line on a device or a group's devices as root, e.g.
    `bulkhead device run dev1 -- systemctl is-active bulkhead-agent`; exits 3 when a command did not exit 0."""
    c = client(ctx)
    body = {"argv": argv, "timeout_seconds": timeout}
    path = f"/api/v1/groups/{target}/commands" if group else f"/api/v1/devices/{target}/commands"
    made = c.request("POST", path, json=body)
    cmds: list[dict[str, Any]] = made if isinstance(made, list) else [made]
    if wait:
        cmds = _wait(c, cmds, wait_seconds)
    if json:
        show(cmds, True)
    else:
        for x in cmds:
            _print(x)
    pending = [x for x in cmds if x["status"] not in _FINISHED]
    if wait and pending:
        raise CliError(
            f"{len(pending)} command(s) not finished after {wait_seconds} s (is the device online?): "
            f"see them later with 'bulkhead device command ID'"
        )
    if wait and any(x["status"] != "exited" or x["exit_code"] != 0 for x in cmds):
        raise typer.Exit(EXIT_REMOTE)


def _wait(c: Any, cmds: list[dict[str, Any]], seconds: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        cmds = [c.request("GET", f"/api/v1/commands/{x['id']}") if x["status"] not in _FINISHED else x for x in cmds]
        if all(x["status"] in _FINISHED for x in cmds) or time.monotonic() > deadline:
            return cmds
        time.sleep(2)


def device_logs(
    ctx: typer.Context,
    device: str,
    unit: str | None = typer.Option(None, "-u", "--unit", help="The systemd unit (default: the whole journal)"),
    since: str | None = typer.Option(None, "--since", help="From when: '2026-12-05 10:00', -2h, -30min, today"),
    lines: int = typer.Option(1000, "--lines", "-n", min=1, max=10000, help="The newest this many lines"),
    wait_seconds: int = typer.Option(900, "--wait-seconds", min=1, help="How long to wait for the device"),
    json: bool = JsonOpt,
) -> None:
    """Operator: the device's journal (journalctl on the device at its next poll), bounded in size."""
    c = client(ctx)
    body = {"unit": unit, "since": since, "lines": lines}
    (cmd,) = _wait(c, [c.request("POST", f"/api/v1/devices/{device}/logs", json=body)], wait_seconds)
    if json:
        show(cmd, True)
    elif cmd["status"] not in _FINISHED:
        raise CliError(
            f"the device did not answer within {wait_seconds} s (is it online?): 'bulkhead device command {cmd['id']}' later"
        )
    else:
        typer.echo((cmd.get("output") or "").rstrip("\n"))
        if cmd["status"] != "exited" or cmd["exit_code"] != 0:
            raise CliError(f"journalctl on {device} ended {cmd['status']} (exit code {cmd['exit_code']})")


def device_commands(ctx: typer.Context, device: str, limit: int | None = LimitOpt, json: bool = JsonOpt) -> None:
    """Admin: the device's commands, newest first."""
    rows = client(ctx).pages(f"/api/v1/devices/{device}/commands", limit=limit)
    if json:
        show(rows, True)
        return
    show([{**r, "argv": " ".join(r["argv"])} for r in rows], False, _COLUMNS)


def command_show(
    ctx: typer.Context,
    command_id: int,
    cancel: bool = typer.Option(False, "--cancel", help="Withdraw it, if the device has not started it"),
    json: bool = JsonOpt,
) -> None:
    """Admin: one command, with its output."""
    cmd = client(ctx).request("DELETE" if cancel else "GET", f"/api/v1/commands/{command_id}")
    if json:
        show(cmd, True)
    else:
        _print(cmd)
