"""`bulkhead device metrics` and `bulkhead alert add|list|remove|firing`: devices' health figures and alert rules."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import typer

from .errors import CliError
from .manage import JsonOpt, client, show

__all__ = ["alert_app", "device_metrics"]

alert_app = typer.Typer(help="Alerts on devices' health: disk, memory, CPU, temperature, offline.", no_args_is_help=True)
_COLUMNS = ["at", "cpu_percent", "memory", "disk", "temperature_c", "load1", "net_rx_bytes", "net_tx_bytes", "uptime_seconds"]
_AGO = re.compile(r"^-(\d{1,6})(min|h|d)$")


def _since(value: str | None) -> str | None:
    """`-30min`, `-6h`, `-7d` or an ISO 8601 time, as the API takes it."""
    if value is None:
        return None
    if m := _AGO.match(value):
        unit = {"min": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return (dt.datetime.now(dt.UTC) - dt.timedelta(**{unit: int(m.group(1))})).isoformat()
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--since {value!r}: give -30min, -6h, -7d or an ISO 8601 time") from None
    return (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).isoformat()


def _percent(used: Any, total: Any) -> str:
    return f"{100 * used / total:.0f}% of {total / 2**30:.1f} GiB" if used is not None and total else ""


def device_metrics(
    ctx: typer.Context,
    device: str,
    since: str | None = typer.Option(None, "--since", help="From when: -30min, -6h, -7d or an ISO time (default: 24 h)"),
    hourly: bool = typer.Option(False, "--hourly", help="Hourly averages only"),
    json: bool = JsonOpt,
) -> None:
    """The device's CPU, memory, disk, temperature and network figures, oldest first."""
    params = {k: v for k, v in {"since": _since(since), "resolution": "hour" if hourly else None}.items() if v}
    rows = client(ctx).request("GET", f"/api/v1/devices/{device}/metrics", params=params)
    if json:
        show(rows, True)
        return
    table = [
        {**r, "memory": _percent(r["memory_used"], r["memory_total"]), "disk": _percent(r["disk_used"], r["disk_total"])}
        for r in rows
    ]
    show(table, False, _COLUMNS, f"metrics of {device}")


@alert_app.command("add")
def alert_add(
    ctx: typer.Context,
    name: str,
    metric: str = typer.Option(
        ...,
        "--metric",
        help="disk_percent, memory_percent, cpu_percent, temperature_c, offline_minutes; events: rolled_back, security_event",
    ),
    above: float = typer.Option(0, "--above", help="Fires above this (percent, °C, or minutes without contact); events: unused"),
    group: str | None = typer.Option(None, "--group", help="Only the group's devices (default: every device)"),
    json: bool = JsonOpt,
) -> None:
    """Operator: add an alert rule; subscribe to `device.alert` (`bulkhead cra notify add -e device.alert`) to hear it."""
    body = {"name": name, "metric": metric, "threshold": above, "group": group}
    show(client(ctx).request("POST", "/api/v1/alerts", json=body), json)


@alert_app.command("list")
def alert_list(ctx: typer.Context, json: bool = JsonOpt) -> None:
    show(client(ctx).request("GET", "/api/v1/alerts"), json, ["name", "metric", "threshold", "group", "created_by"])


@alert_app.command("remove")
def alert_remove(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    client(ctx).request("DELETE", f"/api/v1/alerts/{name}")
    show({"removed": name}, json)


@alert_app.command("firing")
def alert_firing(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """What fires now: alert, device, since when, the value."""
    show(client(ctx).request("GET", "/api/v1/alerts/firing"), json, ["alert", "device", "metric", "value", "threshold", "since"])
