"""Remote commands (/api/v1/devices/{ref}/commands, /api/v1/groups/{name}/commands, /api/v1/commands/{id}) and the
device's report of one (/device/v1/commands/{id}): services/device_commands.py."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, field_validator

from bulkhead.protocol.commands import MAX_ARGS, MAX_ARGV_CHARS, MAX_COMMAND_SECONDS, MAX_OUTPUT_BYTES

from ..ids import DbId
from ..services.auth import Principal
from .deps import Services, principal, services
from .paging import PAGED, Pager, pager
from .wire import Out, Time, absent

router = APIRouter(tags=["commands"])


class CommandIn(BaseModel):
    argv: list[str] = Field(
        min_length=1,
        max_length=MAX_ARGS,
        description='the program and its arguments, run without a shell (give ["sh", "-c", "..."] for one)',
        examples=[["systemctl", "is-active", "bulkhead-agent"]],
    )
    timeout_seconds: int = Field(60, ge=1, le=MAX_COMMAND_SECONDS, description="killed after this long")

    @field_validator("argv")
    @classmethod
    def _argv(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("the program (argv[0]) is empty: name the program to run")
        if sum(len(a) for a in v) > MAX_ARGV_CHARS:
            raise ValueError(f"the arguments are longer than {MAX_ARGV_CHARS} characters together: put a script in a file")
        return v


class CommandOut(Out):
    """A command for one device, and how it ended there."""

    id: int
    device_id: int
    device: str = absent("the device's name")
    kind: Literal["command", "logs"] = Field(description="an administrator's command line, or a read of the journal")
    argv: list[str]
    timeout_seconds: int
    status: Literal["pending", "running", "exited", "timed_out", "failed", "interrupted", "canceled"]
    exit_code: int | None = Field(description="when it exited: its exit status (negative: killed by that signal)")
    output: str | None = Field(description="stdout and stderr together, the first and last 32 KiB when longer")
    output_truncated: bool
    requested_by: str
    requested_at: Time
    started_at: Time | None
    finished_at: Time | None


@router.post("/api/v1/devices/{ref}/commands", status_code=201, response_model=CommandOut, response_model_exclude_unset=True)
def run_on_device(
    ref: str, body: CommandIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Run a command line on the device, as root (administrators; audited). It is pending until the device's agent
    starts it (at its next poll); `GET /api/v1/commands/{id}` has its exit code and output."""
    return svc.command_service().run(who, ref, body.argv, body.timeout_seconds)


# A systemd unit name (systemd.unit(5): letters, digits, ":-_.\\@", at most 256) and the times journalctl's --since
# takes that need no quoting: a date and time, or a relative one ("-2h", "-30min").
_UNIT = r"^[A-Za-z0-9:_.\\@-]{1,256}$"
_SINCE = r"^(\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?|-\d{1,6}(s|min|h|d)|today|yesterday)$"


class LogsIn(BaseModel):
    unit: str | None = Field(None, pattern=_UNIT, description="the systemd unit (absent: the whole journal)")
    since: str | None = Field(
        None, pattern=_SINCE, description="from when: 2026-12-05 10:00, -2h, -30min, today, yesterday (absent: all)"
    )
    lines: int = Field(1000, ge=1, le=10000, description="the newest this many lines")


@router.post("/api/v1/devices/{ref}/logs", status_code=201, response_model=CommandOut, response_model_exclude_unset=True)
def read_device_logs(
    ref: str, body: LogsIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Fetch the device's journal (operators; audited): a `logs` command the agent runs at its next poll
    (`journalctl` with these options only); `GET /api/v1/commands/{id}` has the lines, bounded as any output."""
    return svc.command_service().logs(who, ref, body.unit, body.since, body.lines)


@router.post(
    "/api/v1/groups/{name}/commands", status_code=201, response_model=list[CommandOut], response_model_exclude_unset=True
)
def run_on_group(
    name: str, body: CommandIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """Run a command line on every active device of the group that has the Bulkhead agent (one command each)."""
    return svc.command_service().run_group(who, name, body.argv, body.timeout_seconds)


@router.get("/api/v1/devices/{ref}/commands", response_model=list[CommandOut], response_model_exclude_unset=True, responses=PAGED)
def list_device_commands(
    ref: str, pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """The device's commands, newest first, with their output (administrators; operators see the journal reads)."""
    return pg.send(svc.command_service().list_for_device(who, ref, pg.page))


@router.get("/api/v1/commands/{command_id}", response_model=CommandOut, response_model_exclude_unset=True)
def show_command(command_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.command_service().show(who, command_id)


@router.delete("/api/v1/commands/{command_id}", response_model=CommandOut, response_model_exclude_unset=True)
def cancel_command(command_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Withdraw a command the device has not started (409 once it has)."""
    return svc.command_service().cancel(who, command_id)


class CommandReport(BaseModel):
    status: Literal["running", "exited", "timed_out", "failed", "interrupted"]
    exit_code: int | None = Field(None, ge=-255, le=255)
    output: str | None = Field(None, max_length=MAX_OUTPUT_BYTES + 200)
    output_truncated: bool = False


class CommandReported(Out):
    """The command's status after the report."""

    id: int
    status: str


@router.post("/device/v1/commands/{command_id}", response_model=CommandReported, tags=["device"])
def report_command(
    command_id: DbId, body: CommandReport, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The agent started one of its commands (`running`), or says how it ended, with its bounded output."""
    return svc.command_service().report(who, command_id, body.status, body.exit_code, body.output, body.output_truncated)
