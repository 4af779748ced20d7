"""`bulkhead overlay`: the tenant's package overlay, a signed APT repository (upload, list, remove, key)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import output
from .manage import JsonOpt, client, show

__all__ = ["overlay_app"]

overlay_app = typer.Typer(
    help="The package overlay: your own .deb packages in a signed APT repository the devices install from.",
    no_args_is_help=True,
)

_COLS = ["id", "suite", "name", "version", "architecture", "size", "uploaded_by", "created_at"]


@overlay_app.command("upload")
def overlay_upload(
    ctx: typer.Context,
    deb: Path = typer.Argument(..., exists=True, dir_okay=False, help="The .deb (dpkg-deb --build or dpkg-buildpackage)"),
    suite: str = typer.Option(..., "--suite", help="The distribution it is for, such as bookworm or trixie"),
    json: bool = JsonOpt,
) -> None:
    """Upload a .deb into a suite; the server checks it and publishes the suite again, signed."""
    data = client(ctx).upload(deb, show_progress=not json, params={"suite": suite}, url="/api/v1/overlay/packages")
    show(data, json, title="overlay package")


@overlay_app.command("list")
def overlay_list(
    ctx: typer.Context,
    suite: str | None = typer.Option(None, help="Only this suite"),
    name: str | None = typer.Option(None, help="Only this package"),
    json: bool = JsonOpt,
) -> None:
    """The packages in the overlay."""
    params = {k: v for k, v in (("suite", suite), ("name", name)) if v}
    show(client(ctx).request("GET", "/api/v1/overlay/packages", params=params), json, _COLS)


@overlay_app.command("remove")
def overlay_remove(ctx: typer.Context, package_id: int = typer.Argument(..., help="The package's id (overlay list)")) -> None:
    """Remove a package from its suite; the suite is published again without it."""
    client(ctx).request("DELETE", f"/api/v1/overlay/packages/{package_id}")
    output.line(f"removed overlay package {package_id}")


@overlay_app.command("key")
def overlay_key(
    ctx: typer.Context,
    out: Path | None = typer.Option(None, "--out", help="Write the armoured public key to this file"),
    json: bool = JsonOpt,
) -> None:
    """The repository's signing key (apt's Signed-By); made on first use."""
    data = client(ctx).request("GET", "/api/v1/overlay/key")
    if out is not None:
        out.write_text(data["public_key"])
    if json:
        show(data, json)
    elif out is None:
        typer.echo(data["public_key"], nl=False)
    else:
        output.line(f"key {data['fingerprint']} written to {out}")
