"""`bulkhead rollout ...`: create and steer rollouts; group maintenance windows; DDI settings."""

from __future__ import annotations

import typer

from .client import LimitOpt
from .errors import CliError
from .manage import JsonOpt, client, show
from .overlay import package_set

rollout_app = typer.Typer(help="Rollouts: a release to a target set, in phases, under your control.", no_args_is_help=True)
ddi_app = typer.Typer(help="hawkBit DDI settings of your tenant (gateway token, auto-registration).", no_args_is_help=True)

__all__ = ["ddi_app", "parse_phases", "parse_window", "rollout_app"]


def parse_phases(items: list[str], success: int, error: int) -> list[dict[str, object]]:
    """`10%` is a share of the target, anything else names a device group. No item: one phase of the whole
    target, which the thresholds apply to."""
    phases: list[dict[str, object]] = []
    for item in items:
        phase: dict[str, object] = {"success_threshold": success, "error_threshold": error}
        if item.endswith("%"):
            try:
                phase["percent"] = int(item[:-1])
            except ValueError:
                raise CliError(f"'{item}': write a percentage phase as N% (e.g. 10%)") from None
        else:
            phase["group"] = item
        phases.append(phase)
    return phases or [{"percent": 100, "success_threshold": success, "error_threshold": error}]


def parse_window(cron: str | None, duration: int | None, tz: str) -> dict[str, object] | None:
    if cron is None:
        if duration is not None:
            raise CliError("--window-minutes needs --window (a cron expression for when the window opens)")
        return None
    if duration is None:
        raise CliError("--window needs --window-minutes (how long the window stays open)")
    return {"cron": cron, "duration_minutes": duration, "timezone": tz}


@rollout_app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    release: int | None = typer.Option(None, "--release", "-r", help="Release id (see 'bulkhead release list')"),
    app_version: str | None = typer.Option(None, "--app", help="App version NAME:VERSION instead of a release"),
    package: list[str] = typer.Option(
        [], "--package", "-p", help="NAME=VERSION from the overlay instead of a release (repeatable: a package set)"
    ),
    package_hold: list[str] = typer.Option([], "--package-hold", help="NAME=VERSION to install and hold (apt-mark hold)"),
    package_remove: list[str] = typer.Option([], "--package-remove", help="NAME to remove from the devices"),
    compatible: str | None = typer.Option(None, help="Only devices of this compatible (implied by --release)"),
    type: str = typer.Option("soft", "--type", help="soft, forced or download_only"),
    tag: list[str] = typer.Option([], "--tag", help="Target devices with this tag (repeatable: all required)"),
    group: list[str] = typer.Option([], "--group", help="Target devices in this group (repeatable: any of them)"),
    attr: list[str] = typer.Option([], "--attr", help="KEY=VALUE the device's attribute must equal (repeatable)"),
    phase: list[str] = typer.Option([], "--phase", help="GROUP or N% per phase, in order (repeatable); default one phase"),
    success_threshold: int = typer.Option(100, help="% of a phase's devices that must succeed before the next phase"),
    error_threshold: int = typer.Option(20, help="% of a phase's devices failing that pauses the rollout"),
    window: str | None = typer.Option(None, help="Maintenance window start, as cron (e.g. '0 2 * * *')"),
    window_minutes: int | None = typer.Option(None, help="How long the window stays open"),
    window_tz: str = typer.Option("UTC", help="Time zone of the window (IANA name)"),
    start_at: str | None = typer.Option(None, help="Start time, ISO 8601 with offset (default: now)"),
    approval: bool = typer.Option(False, "--require-approval", help="Wait for an admin's 'rollout approve'"),
    allow_empty: bool = typer.Option(
        False, help="Accept a target no device matches yet (devices that join later get the release)"
    ),
    allow_downgrade: bool = typer.Option(False, help="Accept a version older than what targeted devices run"),
    json: bool = JsonOpt,
) -> None:
    """Create a rollout of an OS release (--release), an app version (--app) or a package set (--package,
    --package-hold, --package-remove); it starts now, at --start-at, or once approved."""
    packages = package_set(package, package_hold, package_remove) or None
    if sum(x is not None for x in (release, app_version, packages)) != 1:
        raise CliError("give one of --release ID, --app NAME:VERSION or --package NAME=VERSION (repeatable)")
    app_ref = None
    if app_version is not None:
        if ":" not in app_version:
            raise CliError(f"'{app_version}': write the app version as NAME:VERSION, e.g. web:2")
        app_name, version = app_version.split(":", 1)
        app_ref = {"name": app_name, "version": version}
    attributes = {}
    for a in attr:
        if "=" not in a:
            raise CliError(f"'{a}': write attributes as KEY=VALUE")
        k, v = a.split("=", 1)
        attributes[k] = v
    body = {
        "name": name,
        "release_id": release,
        "app": app_ref,
        **({"packages": packages} if packages else {}),
        "type": type,
        "target": {"tags": tag, "groups": group, "attributes": attributes, "compatible": compatible},
        "phases": parse_phases(phase, success_threshold, error_threshold),
        "window": parse_window(window, window_minutes, window_tz),
        "start_at": start_at,
        "requires_approval": approval,
        "allow_empty": allow_empty,
        "allow_downgrade": allow_downgrade,
    }
    show(client(ctx).request("POST", "/api/v1/rollouts", json=body), json)


@rollout_app.command("list")
def list_(ctx: typer.Context, json: bool = JsonOpt) -> None:
    rows = client(ctx).pages("/api/v1/rollouts")
    show(rows, json, ["id", "name", "subject", "type", "status", "current_phase", "devices", "counts", "pause_reason"])


@rollout_app.command("show")
def show_(ctx: typer.Context, rollout: str, json: bool = JsonOpt) -> None:
    """Progress per phase: devices per status and bytes transferred."""
    data = client(ctx).request("GET", f"/api/v1/rollouts/{rollout}")
    if json:
        show(data, True)
        return
    phases = data.pop("phases")
    show(data, False)
    show(phases, False, ["index", "name", "state", "devices", "counts", "bytes", "success_threshold", "error_threshold"])


@rollout_app.command("actions")
def actions(
    ctx: typer.Context, rollout: str, status: str | None = None, limit: int | None = LimitOpt, json: bool = JsonOpt
) -> None:
    """Each device's action: status and bytes transferred (all pages unless --limit)."""
    rows = client(ctx).pages(f"/api/v1/rollouts/{rollout}/actions", {"status": status} if status else None, limit)
    show(rows, json, ["id", "device", "phase", "type", "status", "active", "bytes", "updated_at"])


@rollout_app.command("timeline")
def timeline(ctx: typer.Context, rollout: str, json: bool = JsonOpt) -> None:
    """Devices succeeded, failed and canceled over time (at most 60 steps from the rollout's start)."""
    data = client(ctx).request("GET", f"/api/v1/rollouts/{rollout}/timeline")
    show(data if json else data["points"], json, ["at", "succeeded", "failed", "canceled"])


def _verb(verb: str, doc: str) -> None:
    def command(ctx: typer.Context, rollout: str, json: bool = JsonOpt) -> None:
        show(client(ctx).request("POST", f"/api/v1/rollouts/{rollout}/{verb}"), json)

    command.__doc__ = doc
    rollout_app.command(verb)(command)


_verb("approve", "Approve a rollout that waits for approval (admin).")
_verb("pause", "Pause: no new devices get the release until 'resume'.")
_verb("resume", "Resume a paused rollout; failures so far in the current phase count as accepted.")
_verb("cancel", "Cancel: devices that did not start are dropped, started ones are asked to stop.")
_verb("retry", "Give failed and rolled-back devices a new attempt.")


@rollout_app.command("delete")
def delete(ctx: typer.Context, rollout: str, json: bool = JsonOpt) -> None:
    client(ctx).request("DELETE", f"/api/v1/rollouts/{rollout}")
    show({"deleted": rollout}, json)


def group_window(
    ctx: typer.Context,
    group: str,
    cron: str | None = typer.Option(None, help="When the window opens, as cron (e.g. '0 2 * * *')"),
    minutes: int | None = typer.Option(None, help="How long it stays open"),
    tz: str = typer.Option("UTC", help="Time zone (IANA name)"),
    off: bool = typer.Option(False, help="Remove the group's window"),
    json: bool = JsonOpt,
) -> None:
    """Set a group's maintenance window: outside it devices download but do not install."""
    window = None if off else parse_window(cron, minutes, tz)
    if window is None and not off:
        raise CliError("give --cron and --minutes, or --off")
    show(client(ctx).request("PUT", f"/api/v1/groups/{group}/window", json={"window": window}), json)


@ddi_app.command("configure")
def ddi_configure(
    ctx: typer.Context,
    auto_register: bool | None = typer.Option(None, "--auto-register/--no-auto-register", help="Register unknown controllers"),
    default_compatible: str | None = typer.Option(None, help="compatible of auto-registered devices"),
    rotate_gateway_token: bool = typer.Option(False, help="Issue a new GatewayToken (shown once)"),
    json: bool = JsonOpt,
) -> None:
    body = {
        "auto_register": auto_register,
        "default_compatible": default_compatible,
        "rotate_gateway_token": rotate_gateway_token,
    }
    show(client(ctx).request("PUT", "/api/v1/ddi", json=body), json)


def device_provision(
    ctx: typer.Context,
    name: str,
    compatible: str = typer.Option(..., help="The device's RAUC compatible"),
    group: list[str] = typer.Option([], "--group", help="Group (repeatable)"),
    json: bool = JsonOpt,
) -> None:
    """Create a device ahead of time; prints its credential, which is also its DDI TargetToken."""
    show(client(ctx).request("POST", "/api/v1/devices", json={"name": name, "compatible": compatible, "groups": group}), json)
