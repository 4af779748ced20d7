"""`bulkhead security` and `bulkhead release security`: security updates by policy (marks, policies, postponements)."""

from __future__ import annotations

import typer

from .errors import CliError
from .manage import JsonOpt, client, release_app, show

__all__ = ["security_app"]

security_app = typer.Typer(
    help="Security updates by policy: installed automatically within a window unless postponed or opted out.",
    no_args_is_help=True,
)
policy_app = typer.Typer(help="Policies of the tenant (default), groups and devices.", no_args_is_help=True)
security_app.add_typer(policy_app, name="policy")

_MARK_COLS = ["release_id", "compatible", "version", "available_at", "marked_by", "reason", "rollout"]
_POST_COLS = ["id", "release_id", "version", "group", "device", "until", "reason", "postponed_by"]


@release_app.command("security")
def release_security(
    ctx: typer.Context,
    release_id: int = typer.Argument(..., help="The release's id"),
    available_at: str | None = typer.Option(None, help="Since when the fix is available (ISO 8601 with offset; default now)"),
    reason: str | None = typer.Option(None, help="Why, e.g. the CVEs it fixes"),
    unset: bool = typer.Option(False, "--unset", help="It is no security update: cancel its policy rollout"),
    json: bool = JsonOpt,
) -> None:
    """Mark a release a security update (audited): devices get it by their policy (bulkhead security policy)."""
    path = f"/api/v1/releases/{release_id}/security"
    if unset:
        if available_at is not None or reason is not None:
            raise CliError("--unset takes no --available-at or --reason")
        client(ctx).request("DELETE", path)
        show({"release_id": release_id, "security": False}, json)
        return
    body = {k: v for k, v in (("available_at", available_at), ("reason", reason)) if v is not None}
    show(client(ctx).request("PUT", path, json=body), json, title=f"security update {release_id}")


@security_app.command("list")
def security_list(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The releases marked security updates and the rollouts that install them."""
    show(client(ctx).request("GET", "/api/v1/security/releases"), json, _MARK_COLS)


def _scope(group: str | None, device: str | None, default: bool) -> str:
    if (group is not None) + (device is not None) + default != 1:
        raise CliError("give exactly one of --group NAME, --device NAME or --default")
    if group is not None:
        return f"/api/v1/security/policies/groups/{group}"
    if device is not None:
        return f"/api/v1/security/policies/devices/{device}"
    return "/api/v1/security/policies/default"


@policy_app.command("set")
def policy_set(
    ctx: typer.Context,
    group: str | None = typer.Option(None, help="A group's policy"),
    device: str | None = typer.Option(None, help="A device's own policy (wins over its groups')"),
    default: bool = typer.Option(False, "--default", help="The tenant's default (else: automatic)"),
    mode: str = typer.Option("automatic", help="automatic or opt_out"),
    window_days: int | None = typer.Option(None, help="Install within this many days of availability (default 7)"),
    json: bool = JsonOpt,
) -> None:
    """Set a security-update policy (audited)."""
    body = {"mode": mode, "window_days": window_days}
    show(client(ctx).request("PUT", _scope(group, device, default), json=body), json, title="policy")


@policy_app.command("clear")
def policy_clear(
    ctx: typer.Context,
    group: str | None = typer.Option(None),
    device: str | None = typer.Option(None),
    default: bool = typer.Option(False, "--default"),
    json: bool = JsonOpt,
) -> None:
    """Remove a policy: the group or device follows its groups' or the tenant's again (audited)."""
    client(ctx).request("DELETE", _scope(group, device, default))
    show({"cleared": group or device or "default"}, json)


@policy_app.command("list")
def policy_list(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The tenant's default, the postponement limit, and every group's and device's policy."""
    data = client(ctx).request("GET", "/api/v1/security/policies")
    if json:
        show(data, True)
        return
    show({"default": data["default"], "max_postpone_days": data["max_postpone_days"]}, False, title="security policy")
    show(data["policies"], False, ["scope", "group", "device", "mode", "window_days", "updated_by", "updated_at"])


@security_app.command("postpone")
def security_postpone(
    ctx: typer.Context,
    release_id: int = typer.Argument(..., help="The security release's id"),
    device: str | None = typer.Option(None, help="Postpone it for this device"),
    group: str | None = typer.Option(None, help="Postpone it for this group"),
    days: int | None = typer.Option(None, help="By this many days more"),
    until: str | None = typer.Option(None, help="Until this time (ISO 8601 with offset)"),
    reason: str = typer.Option(..., help="Why (audited)"),
    json: bool = JsonOpt,
) -> None:
    """Postpone a security update for a device or group, within the server's limit past its due date (audited)."""
    if (device is None) == (group is None):
        raise CliError("give exactly one of --device NAME or --group NAME")
    if (days is None) == (until is None):
        raise CliError("give exactly one of --days N or --until TIME")
    body = {"release_id": release_id, "device": device, "group": group, "days": days, "until": until, "reason": reason}
    out = client(ctx).request("POST", "/api/v1/security/postponements", json={k: v for k, v in body.items() if v is not None})
    show(out, json, title=f"postponement {out['id']}")


@security_app.command("postponements")
def security_postponements(
    ctx: typer.Context, release: int | None = typer.Option(None, help="Only this release's"), json: bool = JsonOpt
) -> None:
    """The postponements that are set."""
    params = {"release": release} if release is not None else None
    show(client(ctx).request("GET", "/api/v1/security/postponements", params=params), json, _POST_COLS)


@security_app.command("resume")
def security_resume(
    ctx: typer.Context, postponement_id: int = typer.Argument(..., help="The postponement's id"), json: bool = JsonOpt
) -> None:
    """End a postponement now (audited): its devices get the update once it is due."""
    client(ctx).request("DELETE", f"/api/v1/security/postponements/{postponement_id}")
    show({"ended": postponement_id}, json)


@security_app.command("device")
def security_device(ctx: typer.Context, name: str = typer.Argument(..., help="The device"), json: bool = JsonOpt) -> None:
    """A device's pending security update: version, due date, postponement, state."""
    show(client(ctx).request("GET", f"/api/v1/devices/{name}/security"), json, title=name)


@security_app.command("run")
def security_run(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Apply the policy now instead of at the server's next minute: due devices get their update."""
    show(client(ctx).request("POST", "/api/v1/security/run"), json, title="security updates")
