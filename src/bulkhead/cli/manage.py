"""Management commands over the server's API: tenants, tokens, keyring, releases, devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import output
from .client import Client, LimitOpt
from .errors import CliError

tenant_app = typer.Typer(help="Tenants (administrator token).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens, e.g. for CI pipelines.", no_args_is_help=True)
keyring_app = typer.Typer(help="The tenant's keyring that verifies uploaded bundles.", no_args_is_help=True)
release_app = typer.Typer(help="OS releases (signed RAUC bundles).", no_args_is_help=True)
device_app = typer.Typer(help="Devices and their enrollment.", no_args_is_help=True)
bootstrap_app = typer.Typer(help="Bootstrap tokens with which devices enroll.", no_args_is_help=True)

JsonOpt = typer.Option(False, "--json", help="Machine-readable output")


def client(ctx: typer.Context) -> Client:
    obj: dict[str, Any] = ctx.find_root().obj or {}
    return Client(obj.get("server") or "http://127.0.0.1:8080", obj.get("token"))


def show(data: Any, as_json: bool, columns: list[str] | None = None, title: str | None = None) -> None:
    if as_json:
        output.emit_json(data)
    elif isinstance(data, list):
        output.table(data, columns or (list(data[0].keys()) if data else []), title)
    elif data is not None:
        output.record(data, title)


@tenant_app.command("create")
def tenant_create(ctx: typer.Context, name: str, admin_user: str = "admin", json: bool = JsonOpt) -> None:
    """Create a tenant; prints its admin's first API token (shown once)."""
    show(client(ctx).request("POST", "/api/v1/tenants", json={"name": name, "admin_user": admin_user}), json)


@tenant_app.command("list")
def tenant_list(ctx: typer.Context, json: bool = JsonOpt) -> None:
    show(client(ctx).pages("/api/v1/tenants"), json, ["id", "name", "keyring"])


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: str,
    user: str | None = typer.Option(None, help="User the token acts as (default: admin)"),
    role: str | None = typer.Option(None, help="Create the user with this role: viewer, operator, admin"),
    expires_in_days: int | None = None,
    json: bool = JsonOpt,
) -> None:
    """Create an API token; the token is shown once."""
    show(
        client(ctx).request(
            "POST", "/api/v1/tokens", json={"name": name, "user": user, "role": role, "expires_in_days": expires_in_days}
        ),
        json,
    )


@keyring_app.command("set")
def keyring_set(
    ctx: typer.Context,
    pem: Path = typer.Argument(..., exists=True, dir_okay=False),
    check_purpose: str = typer.Option("smimesign", help="smimesign, codesign or any"),
    json: bool = JsonOpt,
) -> None:
    """Upload PEM trust anchors (CA certificates) for bundle verification."""
    text = pem.read_text(errors="replace")
    show(client(ctx).request("PUT", "/api/v1/keyring", json={"pem": text, "check_purpose": check_purpose}), json)


@keyring_app.command("show")
def keyring_show(ctx: typer.Context, json: bool = JsonOpt) -> None:
    data = client(ctx).request("GET", "/api/v1/keyring")
    if not json:
        data.pop("pem", None)
    show(data, json)


@release_app.command("upload")
def release_upload(
    ctx: typer.Context,
    bundle: Path = typer.Argument(..., exists=True, dir_okay=False),
    compatible: str | None = typer.Option(None, help="for a SWUpdate .swu: the compatible of the devices it is for"),
    security: bool = typer.Option(False, "--security", help="a security update: installed by policy (docs/cra.md)"),
    json: bool = JsonOpt,
) -> None:
    """Upload a signed RAUC bundle or SWUpdate .swu; the server verifies it against the keyring before storing it."""
    params = {"compatible": compatible} if compatible else {}
    if security:
        params["security"] = "true"
    data = client(ctx).upload(bundle, show_progress=not json, params=params or None)
    show(data, json, title="release")


@release_app.command("sbom")
def release_sbom(
    ctx: typer.Context,
    release_id: int,
    sbom: Path | None = typer.Argument(None, exists=True, dir_okay=False, help="SPDX or CycloneDX JSON to attach"),
    get: str | None = typer.Option(None, "--get", help="Download the release's SBOM of this format (spdx, cyclonedx)"),
    out: Path | None = typer.Option(None, "--out", help="With --get: write here instead of standard output"),
    json: bool = JsonOpt,
) -> None:
    """Attach an SBOM to a release (one per format; a new one replaces the old), or download one with --get."""
    api = client(ctx)
    if get is not None:
        if sbom is not None:
            raise CliError("give either a file to attach or --get FORMAT, not both")
        resp = api.raw("GET", f"/api/v1/releases/{release_id}/sbom", params={"format": get})
        if out is None:
            output.console.print(resp.text, markup=False, highlight=False, soft_wrap=True)
        else:
            out.write_bytes(resp.content)
        return
    if sbom is None:
        raise CliError("give the SBOM file to attach, or --get FORMAT to download one")
    with sbom.open("rb") as f:
        data = api.request(
            "PUT",
            f"/api/v1/releases/{release_id}/sbom",
            content=f,
            headers={"content-type": "application/json", "content-length": str(sbom.stat().st_size)},
        )
    show(data, json, title="SBOM")


@release_app.command("sbom-export")
def release_sbom_export(
    ctx: typer.Context,
    release_id: int,
    fmt: str = typer.Option("cyclonedx", "--format", "-f", help="cyclonedx (CycloneDX 1.6), spdx (SPDX 2.3), spdx3 (SPDX 3.0.1)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the document here instead of standard output"),
    json: bool = JsonOpt,
) -> None:
    """Export a release's SBOM as the server writes it: the components of its attached SBOMs and the release itself."""
    resp = client(ctx).raw("GET", f"/api/v1/releases/{release_id}/sbom/export", params={"format": fmt})
    if out is None:
        output.console.print(resp.text, markup=False, highlight=False, soft_wrap=True)
        return
    out.write_bytes(resp.content)
    info = {"release": release_id, "format": fmt, "file": str(out), "size": len(resp.content)}
    show(info, json, title="SBOM export")


_REL_COLS = ["id", "compatible", "version", "format", "size", "sha256", "created_at"]


@release_app.command("list")
def release_list(ctx: typer.Context, compatible: str | None = None, limit: int | None = LimitOpt, json: bool = JsonOpt) -> None:
    params = {"compatible": compatible} if compatible else {}
    show(client(ctx).pages("/api/v1/releases", params, limit), json, _REL_COLS)


@release_app.command("show")
def release_show(ctx: typer.Context, release_id: int, json: bool = JsonOpt) -> None:
    show(client(ctx).request("GET", f"/api/v1/releases/{release_id}"), json)


@release_app.command("delete")
def release_delete(ctx: typer.Context, release_id: int, json: bool = JsonOpt) -> None:
    """Delete a release (refused while a device still needs it)."""
    client(ctx).request("DELETE", f"/api/v1/releases/{release_id}")
    show({"deleted": release_id}, json)


_DEV_COLS = ["id", "name", "status", "groups", "os", "update", "bytes_served", "last_seen"]


@device_app.command("list")
def device_list(
    ctx: typer.Context,
    tag: list[str] = typer.Option([], "--tag", help="Only devices with this tag (repeat: with all of them)"),
    group: str | None = typer.Option(None, help="Only devices in this group"),
    status: str | None = typer.Option(None, help="Only devices in this status: active, pending or disabled"),
    compatible: str | None = typer.Option(None, help="Only devices of this compatible"),
    version: str | None = typer.Option(None, help="Only devices that reported this OS version"),
    name_prefix: str | None = typer.Option(None, help="Only devices whose name starts with this"),
    limit: int | None = LimitOpt,
    json: bool = JsonOpt,
) -> None:
    """The fleet, filtered by the server (all pages unless --limit); `device show` has a device's inventory."""
    filters = {"group": group, "status": status, "compatible": compatible, "version": version, "name_prefix": name_prefix}
    params: dict[str, Any] = {k: v for k, v in filters.items() if v}
    if tag:
        params["tag"] = tag
    rows = client(ctx).pages("/api/v1/devices", params, limit)
    if not json:
        for r in rows:
            up = r.get("update") or {}
            r["update"] = f"{up.get('phase', '')} {up.get('version', '')}".strip()
            r["os"] = r.get("os_version") or (r.get("reported") or {}).get("os_version") or ""
    show(rows, json, _DEV_COLS)


@device_app.command("show")
def device_show(
    ctx: typer.Context,
    device: str,
    packages: bool = typer.Option(False, "--packages", help="List the device's packages instead of the summary"),
    grep: str | None = typer.Option(None, "--grep", help="Only packages whose name matches (a glob, or a substring)"),
    json: bool = JsonOpt,
) -> None:
    """A device's summary: OS version, slots, update, apps, packages counted, last seen (--packages lists them)."""
    from .device_view import render

    render(client(ctx).request("GET", f"/api/v1/devices/{device}"), json, packages, grep)


@device_app.command("approve")
def device_approve(ctx: typer.Context, device: str, json: bool = JsonOpt) -> None:
    """Approve a device that enrolled with a token that requires approval."""
    show(client(ctx).request("POST", f"/api/v1/devices/{device}/approve"), json)


@device_app.command("tag")
def device_tag(
    ctx: typer.Context,
    device: str,
    add: list[str] = typer.Option([], "--add"),
    remove: list[str] = typer.Option([], "--remove"),
    json: bool = JsonOpt,
) -> None:
    if not add and not remove:
        raise CliError("give --add TAG and/or --remove TAG")
    show(client(ctx).request("POST", f"/api/v1/devices/{device}/tags", json={"add": add, "remove": remove}), json)


@device_app.command("assign")
def device_assign(
    ctx: typer.Context,
    device: str,
    release_id: int | None = typer.Argument(None),
    allow_downgrade: bool = typer.Option(False, help="Accept a release older than the device runs"),
    json: bool = JsonOpt,
) -> None:
    """Set the device's desired OS release (omit RELEASE_ID to clear it)."""
    body = {"release_id": release_id, "allow_downgrade": allow_downgrade}
    show(client(ctx).request("PUT", f"/api/v1/devices/{device}/desired-release", json=body), json)


@bootstrap_app.command("create")
def bootstrap_create(
    ctx: typer.Context,
    name: str,
    group: str | None = None,
    expires_in_hours: float = 24.0,
    requires_approval: bool = False,
    max_uses: int | None = None,
    json: bool = JsonOpt,
) -> None:
    """Create a bootstrap token for enrolling devices (shown once)."""
    show(
        client(ctx).request(
            "POST",
            "/api/v1/bootstrap-tokens",
            json={
                "name": name,
                "group": group,
                "expires_in_hours": expires_in_hours,
                "requires_approval": requires_approval,
                "max_uses": max_uses,
            },
        ),
        json,
    )


@bootstrap_app.command("list")
def bootstrap_list(ctx: typer.Context, json: bool = JsonOpt) -> None:
    show(client(ctx).pages("/api/v1/bootstrap-tokens"), json)


@bootstrap_app.command("revoke")
def bootstrap_revoke(ctx: typer.Context, token_id: int, json: bool = JsonOpt) -> None:
    client(ctx).request("DELETE", f"/api/v1/bootstrap-tokens/{token_id}")
    show({"revoked": token_id}, json)


# -- identity and lifecycle: API tokens, users, device credentials ------------------------------

user_app = typer.Typer(help="Users of the tenant.", no_args_is_help=True)


@token_app.command("list")
def token_list(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The tenant's API tokens (never their secrets); admins only."""
    show(client(ctx).pages("/api/v1/tokens"), json, ["id", "name", "user", "role", "revoked", "expires_at"])


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: int, json: bool = JsonOpt) -> None:
    """Revoke an API token (every server process refuses it within a second)."""
    show(client(ctx).request("DELETE", f"/api/v1/tokens/{token_id}"), json)


@user_app.command("list")
def user_list(ctx: typer.Context, json: bool = JsonOpt) -> None:
    show(client(ctx).pages("/api/v1/users"), json, ["id", "name", "role"])


@user_app.command("delete")
def user_delete(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """Remove a user and revoke their API tokens (the tenant's last admin stays)."""
    show(client(ctx).request("DELETE", f"/api/v1/users/{name}"), json)


def _password(from_stdin: bool) -> str:
    """The new web UI password: one line of standard input (--password-stdin), else asked for twice, hidden."""
    if from_stdin:
        import sys

        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("Password (at least 10 characters)", hide_input=True, confirmation_prompt=True)
    return value


PasswordStdinOpt = typer.Option(False, "--password-stdin", help="Read the password from standard input (one line)")


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: str,
    role: str = typer.Option("viewer", help="viewer, operator or admin"),
    password_stdin: bool = PasswordStdinOpt,
    no_password: bool = typer.Option(False, "--no-password", help="API tokens only: no web UI sign-in"),
    json: bool = JsonOpt,
) -> None:
    """Add a user who signs in to the web UI with a password (admins); the same roles as API tokens."""
    password = None if no_password else _password(password_stdin)
    c = client(ctx)
    out = c.request("POST", "/api/v1/users", json={"name": name, "role": role})
    if password is not None:
        try:
            out = c.request("PUT", f"/api/v1/users/{name}/password", json={"password": password})
        except CliError:
            c.request("DELETE", f"/api/v1/users/{name}")  # a refused password leaves no user without one behind
            raise
    show(out, json)


@user_app.command("reset-password")
def user_reset_password(ctx: typer.Context, name: str, password_stdin: bool = PasswordStdinOpt, json: bool = JsonOpt) -> None:
    """Set a user's web UI password (admins); the user's browser sessions end."""
    show(client(ctx).request("PUT", f"/api/v1/users/{name}/password", json={"password": _password(password_stdin)}), json)


@user_app.command("remove")
def user_remove(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """Remove a user: their API tokens and web sessions end (the tenant's last admin stays)."""
    show(client(ctx).request("DELETE", f"/api/v1/users/{name}"), json)


@device_app.command("reset-credential")
def device_reset_credential(ctx: typer.Context, device: str, json: bool = JsonOpt) -> None:
    """Revoke a device's credential and signed URLs: it may enroll once more under its name (a provisioned
    device gets its new credential printed here instead)."""
    show(client(ctx).request("POST", f"/api/v1/devices/{device}/reset-credential"), json)


@device_app.command("factory-reset")
def device_factory_reset(
    ctx: typer.Context,
    device: str,
    cancel: bool = typer.Option(False, "--cancel", help="Withdraw a request the device has not carried out yet"),
    json: bool = JsonOpt,
) -> None:
    """Admin: the device erases its data partition (volumes, state, credential), reboots and enrolls again."""
    show(client(ctx).request("DELETE" if cancel else "POST", f"/api/v1/devices/{device}/factory-reset"), json)


@device_app.command("disable")
def device_disable(ctx: typer.Context, device: str, json: bool = JsonOpt) -> None:
    """Stop serving a device (403, no artifacts) until it is enabled."""
    show(client(ctx).request("POST", f"/api/v1/devices/{device}/disable"), json)


@device_app.command("enable")
def device_enable(ctx: typer.Context, device: str, json: bool = JsonOpt) -> None:
    show(client(ctx).request("POST", f"/api/v1/devices/{device}/enable"), json)


@device_app.command("delete")
def device_delete(ctx: typer.Context, device: str, json: bool = JsonOpt) -> None:
    """Decommission a device: its credential, history and rollout actions go."""
    show(client(ctx).request("DELETE", f"/api/v1/devices/{device}"), json)
