"""`bulkhead overlay`: the tenant's package overlay, a signed APT repository (upload, list, remove, key)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import output
from .errors import CliError
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
def overlay_remove(
    ctx: typer.Context, package_id: int = typer.Argument(..., help="The package's id (overlay list)"), json: bool = JsonOpt
) -> None:
    """Remove a package from its suite; the suite is published again without it."""
    client(ctx).request("DELETE", f"/api/v1/overlay/packages/{package_id}")
    if json:
        show({"id": package_id, "removed": True}, json)
    else:
        output.line(f"removed overlay package {package_id}")


@overlay_app.command("key")
def overlay_key(
    ctx: typer.Context,
    out: Path | None = typer.Option(None, "--out", help="Write the armoured public key to this file"),
    rotate: bool = typer.Option(False, "--rotate", help="Begin a rotation: a new key; both sign until --finish"),
    finish: bool = typer.Option(False, "--finish", help="Finish the rotation: the old key is deleted"),
    json: bool = JsonOpt,
) -> None:
    """The repository's signing key (apt's Signed-By); made on first use. Rotate it without breaking devices:
    --rotate, wait until the devices have polled (their agents fetch the key on every pass), then --finish."""
    if rotate and finish:
        raise CliError("--rotate or --finish, not both")
    path = "/api/v1/overlay/key" + ("/rotate" if rotate else "/finish" if finish else "")
    data = client(ctx).request("POST" if rotate or finish else "GET", path)
    if out is not None:
        out.write_text(data["public_key"])
    if json:
        show(data, json)
    elif out is None:
        typer.echo(data["public_key"], nl=False)
    else:
        output.line(f"key {data['fingerprint']} written to {out}")


def package_set(install: list[str], hold: list[str], remove: list[str]) -> dict[str, dict[str, object]]:
    """NAME=VERSION (NAME alone: the newest) to install, to install and hold, and NAME to remove, as the API's
    {name: {version, hold} | {remove}}."""
    packages: dict[str, dict[str, object]] = {}
    for spec, held in [(p, False) for p in install] + [(h, True) for h in hold]:
        name, _, version = spec.partition("=")
        packages[name] = {"version": version or None, "hold": held}
    for name in remove:
        packages[name] = {"remove": True}
    return packages


@overlay_app.command("desired")
def overlay_desired(
    ctx: typer.Context,
    group: str | None = typer.Option(None, help="A group's desired packages"),
    device: str | None = typer.Option(None, help="A device's own (they override its groups')"),
    package: list[str] = typer.Option([], "--package", "-p", help="NAME=VERSION to install (NAME alone: the newest)"),
    hold: list[str] = typer.Option([], "--hold", help="NAME or NAME=VERSION to install and hold (apt-mark hold)"),
    remove: list[str] = typer.Option([], "--remove", help="NAME to remove from the devices"),
    forget: list[str] = typer.Option([], "--forget", help="NAME to stop managing"),
    json: bool = JsonOpt,
) -> None:
    """Set which Debian packages a group's or a device's devices have (apt installs them from the overlay)."""
    if (group is None) == (device is None):
        raise CliError("give exactly one of --group NAME or --device NAME")
    packages: dict[str, dict[str, object] | None] = {**package_set(package, hold, remove)}
    for name in forget:
        packages[name] = None
    if not packages:
        raise CliError("give at least one --package, --hold, --remove or --forget")
    path = f"/api/v1/groups/{group}/desired" if group is not None else f"/api/v1/devices/{device}/desired"
    show(client(ctx).request("PATCH", path, json={"packages": packages}), json)


@overlay_app.command("rebuild")
def overlay_rebuild(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="The Debian source package, such as openssl"),
    patch: Path = typer.Option(..., "--patch", exists=True, dir_okay=False, help="The fix, a patch for patch -p1"),
    suite: str = typer.Option("bookworm", "--suite", help="The Debian suite to rebuild for (and the overlay suite)"),
    cve: list[str] = typer.Option([], "--cve", help="A CVE the patch fixes (repeat): named in the changelog entry"),
    mirror: str = typer.Option("http://deb.debian.org/debian", "--mirror", help="The Debian mirror"),
    out: Path = typer.Option(Path("rebuild"), "--out", help="Where the built .deb files go"),
    upload: bool = typer.Option(True, "--upload/--no-upload", help="Upload the built packages into the overlay"),
    json: bool = JsonOpt,
) -> None:
    """Fetch the suite's source package, apply the patch, bump the version (+bulkhead1) with a changelog entry
    naming the CVEs, build it in a clean chroot (mmdebstrap; needs root) and upload the binary packages."""
    from bulkhead.osbuild.overlay_rebuild import RebuildSpec, rebuild

    spec = RebuildSpec(source, patch, suite, tuple(cve), mirror)
    if not json:
        output.line(f"rebuilding {source} for {suite} with {patch.name} (a clean chroot: a few minutes)")
    debs = rebuild(spec, out)
    uploaded = []
    for deb in debs:
        if upload:
            uploaded.append(client(ctx).upload(deb, show_progress=False, params={"suite": suite}, url="/api/v1/overlay/packages"))
        elif not json:
            output.line(f"built {deb}")
    if upload:
        show(uploaded, json, ["id", "suite", "name", "version", "architecture", "fixes"])
    elif json:
        show([{"file": str(d)} for d in debs], json)
