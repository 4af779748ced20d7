"""App and desired-state commands: create app versions, set a device's or group's apps and files, registry credentials."""

from __future__ import annotations

import base64
import json as jsonlib
from pathlib import Path

import typer

from . import output
from .errors import CliError
from .manage import JsonOpt, client, show

app_app = typer.Typer(help="Container apps (versioned) and registry credentials.", no_args_is_help=True)
group_app = typer.Typer(help="Device groups: desired release, apps and files shared by their devices.", no_args_is_help=True)

__all__ = ["app_app", "group_app", "parse_apps", "parse_files"]


def parse_apps(items: list[str]) -> dict[str, str | None]:
    """`name=version` sets an app, `name=` or `-name` removes it."""
    out: dict[str, str | None] = {}
    for item in items:
        if item.startswith("-"):
            out[item[1:]] = None
        elif "=" in item:
            name, version = item.split("=", 1)
            out[name] = version or None
        else:
            raise CliError(f"'{item}': write apps as NAME=VERSION (or -NAME to remove)")
    return out


def parse_files(items: list[str], mode: str, template: bool, on_change: str | None) -> list[dict[str, object]]:
    """`/device/path=local-file` places the local file's content at that path on the device."""
    files: list[dict[str, object]] = []
    for item in items:
        if "=" not in item or not item.startswith("/"):
            raise CliError(f"'{item}': write files as /PATH/ON/DEVICE=LOCAL_FILE")
        target, source = item.split("=", 1)
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise CliError(f"cannot read {source}: {e.strerror}") from None
        files.append(
            {
                "path": target,
                "content_b64": base64.b64encode(data).decode(),
                "mode": mode,
                "template": template,
                "on_change": on_change,
            }
        )
    return files


def _app_body(
    image: str | None,
    compose: Path | None,
    env: list[str],
    port: list[str],
    volume: list[str],
    restart: str,
    command: str | None,
    privileged: bool,
    device: list[str],
    network: str | None,
) -> dict[str, object]:
    if (image is None) == (compose is None):
        raise CliError("give either --image or --compose")
    if compose is not None:
        try:
            return {"compose": compose.read_text()}
        except OSError as e:
            raise CliError(f"cannot read {compose}: {e.strerror}") from None
    envs = {k: v for k, _, v in (e.partition("=") for e in env)}
    spec: dict[str, object] = {
        "name": "main", "image": image, "env": envs, "ports": port, "volumes": volume, "restart": restart,
        "command": command.split() if command else [],
    }  # fmt: skip
    if privileged:
        spec["privileged"] = True
    if device:
        spec["devices"] = device
    if network:
        spec["network_mode"] = network
    return {"containers": [spec]}


ImageOpt = typer.Option(None, help="Single-container app: the image reference (ideally by digest)")
ComposeOpt = typer.Option(
    None, help="A compose file whose services become the app's containers (keys: image, command, environment, "
    "ports, volumes, restart, privileged, devices, network_mode)"
)  # fmt: skip
EnvOpt = typer.Option([], "--env", "-e", help="KEY=VALUE (with --image)")
PortOpt = typer.Option([], "--port", "-p", help="HOST:CONTAINER[/tcp|udp] (with --image)")
VolumeOpt = typer.Option([], "--volume", "-v", help="NAME_OR_PATH:/path[:ro] (with --image)")
RestartOpt = typer.Option("always", help="no, always, on-failure, unless-stopped")
CommandOpt = typer.Option(None, help="Command to run instead of the image's (with --image)")
PrivilegedOpt = typer.Option(False, help="Run the container privileged (with --image)")
DeviceOpt = typer.Option([], "--device", help="Host device to pass in, e.g. /dev/ttyUSB0 (with --image; repeatable)")
NetworkOpt = typer.Option(None, help="host, bridge, none or a network name (with --image)")


@app_app.command("create")
def app_create(
    ctx: typer.Context,
    name: str,
    version: str,
    image: str | None = ImageOpt,
    compose: Path | None = ComposeOpt,
    env: list[str] = EnvOpt,
    port: list[str] = PortOpt,
    volume: list[str] = VolumeOpt,
    restart: str = RestartOpt,
    command: str | None = CommandOpt,
    privileged: bool = PrivilegedOpt,
    device: list[str] = DeviceOpt,
    network: str | None = NetworkOpt,
    sbom: Path | None = typer.Option(
        None, "--sbom", exists=True, dir_okay=False, help="The version's CycloneDX 1.4-1.6 JSON SBOM (scans match it with OSV)"
    ),
    json: bool = JsonOpt,
) -> None:
    """Create an app version from an image or a compose file (with its SBOM: a bad SBOM creates nothing)."""
    body = _app_body(image, compose, env, port, volume, restart, command, privileged, device, network)
    if sbom is not None:
        try:
            body["sbom"] = jsonlib.loads(sbom.read_bytes())
        except (OSError, ValueError) as e:
            raise CliError(f"cannot read {sbom} as JSON: {e}; give a CycloneDX JSON SBOM") from None
    show(client(ctx).request("POST", "/api/v1/apps", json={"name": name, "version": version, **body}), json)


@app_app.command("sbom")
def app_sbom(
    ctx: typer.Context,
    name: str,
    version: str,
    sbom: Path | None = typer.Argument(None, exists=True, dir_okay=False, help="CycloneDX 1.4-1.6 JSON to attach"),
    get: bool = typer.Option(False, "--get", help="Download the app version's SBOM instead"),
    out: Path | None = typer.Option(None, "--out", help="With --get: write here instead of standard output"),
    json: bool = JsonOpt,
) -> None:
    """Attach a CycloneDX SBOM to an app version (a new one replaces the old), or download it with --get."""
    api = client(ctx)
    path = f"/api/v1/apps/{name}/{version}/sbom"
    if get:
        if sbom is not None:
            raise CliError("give either a file to attach or --get, not both")
        resp = api.raw("GET", path)
        if out is None:
            output.console.print(resp.text, markup=False, highlight=False, soft_wrap=True)
        else:
            out.write_bytes(resp.content)
        return
    if sbom is None:
        raise CliError("give the SBOM file to attach, or --get to download the version's SBOM")
    with sbom.open("rb") as f:
        data = api.request(
            "PUT", path, content=f, headers={"content-type": "application/json", "content-length": str(sbom.stat().st_size)}
        )
    show(data, json, title="SBOM")


@app_app.command("update")
def app_update(
    ctx: typer.Context,
    name: str,
    version: str,
    image: str | None = ImageOpt,
    compose: Path | None = ComposeOpt,
    env: list[str] = EnvOpt,
    port: list[str] = PortOpt,
    volume: list[str] = VolumeOpt,
    restart: str = RestartOpt,
    command: str | None = CommandOpt,
    privileged: bool = PrivilegedOpt,
    device: list[str] = DeviceOpt,
    network: str | None = NetworkOpt,
    json: bool = JsonOpt,
) -> None:
    """Replace an app version's containers; devices that run it recreate the containers that changed."""
    body = _app_body(image, compose, env, port, volume, restart, command, privileged, device, network)
    show(client(ctx).request("PUT", f"/api/v1/apps/{name}/{version}", json=body), json)


@app_app.command("delete")
def app_delete(ctx: typer.Context, name: str, version: str, json: bool = JsonOpt) -> None:
    """Delete an app version: refused while a group or device wants it or a rollout names it."""
    client(ctx).request("DELETE", f"/api/v1/apps/{name}/{version}")
    show({"deleted": f"{name} {version}"}, json)


@app_app.command("list")
def app_list(ctx: typer.Context, name: str | None = None, json: bool = JsonOpt) -> None:
    rows = client(ctx).pages("/api/v1/apps", {"name": name} if name else None)
    show(rows, json, ["id", "name", "version", "created_at"])


@app_app.command("registry")
def app_registry(
    ctx: typer.Context,
    host: str,
    username: str = typer.Option(..., help="Registry user"),
    password: str = typer.Option(..., prompt=True, hide_input=True, envvar="BULKHEAD_REGISTRY_PASSWORD"),
    json: bool = JsonOpt,
) -> None:
    """Store credentials devices use to pull app images from HOST."""
    show(client(ctx).request("PUT", "/api/v1/registries", json={"host": host, "username": username, "password": password}), json)


def _desired_body(
    apps: list[str], files: list[str], remove_file: list[str], mode: str, template: bool, on_change: str | None
) -> dict[str, object]:
    body: dict[str, object] = {}
    if apps:
        body["apps"] = parse_apps(apps)
    if files:
        body["files"] = parse_files(files, mode, template, on_change)
    if remove_file:
        body["remove_files"] = remove_file
    return body


AppsOpt = typer.Option([], "--app", "-a", help="NAME=VERSION to run, -NAME to remove (repeatable)")
FilesOpt = typer.Option([], "--file", "-f", help="/PATH/ON/DEVICE=LOCAL_FILE (repeatable)")
RemoveFileOpt = typer.Option([], "--remove-file", help="Stop managing this device path (repeatable)")
ModeOpt = typer.Option("0644", help="Mode of the files given with --file")
TemplateOpt = typer.Option(False, help="Render ${attribute} placeholders from device attributes")
OnChangeOpt = typer.Option(None, help="Shell command the device runs after the files change")


def set_device_desired(
    ctx: typer.Context,
    device: str,
    app: list[str] = AppsOpt,
    file: list[str] = FilesOpt,
    remove_file: list[str] = RemoveFileOpt,
    mode: str = ModeOpt,
    template: bool = TemplateOpt,
    on_change: str | None = OnChangeOpt,
    json: bool = JsonOpt,
) -> None:
    """Set a device's apps and files (they override its groups')."""
    body = _desired_body(app, file, remove_file, mode, template, on_change)
    show(client(ctx).request("PATCH", f"/api/v1/devices/{device}/desired", json=body), json)


def device_events(ctx: typer.Context, device: str, limit: int = 50, json: bool = JsonOpt) -> None:
    """The device's reported history (update phases, apps, files), newest first."""
    rows = client(ctx).pages(f"/api/v1/devices/{device}/events", limit=limit)
    for r in rows:
        r["details"] = ", ".join(f"{k}={v}" for k, v in (r.get("details") or {}).items() if v is not None)
    show(rows, json, ["seq", "device_time", "kind", "phase", "release_id", "details"])


@group_app.command("set")
def group_set(
    ctx: typer.Context,
    group: str,
    release: int | None = typer.Option(None, help="Release id every device of the group should run"),
    clear_release: bool = typer.Option(False, help="Remove the group's release"),
    app: list[str] = AppsOpt,
    file: list[str] = FilesOpt,
    remove_file: list[str] = RemoveFileOpt,
    mode: str = ModeOpt,
    template: bool = TemplateOpt,
    on_change: str | None = OnChangeOpt,
    allow_downgrade: bool = typer.Option(False, help="Accept a release older than the group's or its devices'"),
    json: bool = JsonOpt,
) -> None:
    """Set a group's release, apps and files (creates the group if it does not exist)."""
    body = _desired_body(app, file, remove_file, mode, template, on_change)
    if release is not None or clear_release:
        body["release_id"] = None if clear_release else release
        body["allow_downgrade"] = allow_downgrade
    show(client(ctx).request("PATCH", f"/api/v1/groups/{group}/desired", json=body), json)


@group_app.command("list")
def group_list(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Every group with its device count, release, apps and window."""
    rows = client(ctx).pages("/api/v1/groups")
    show(rows, json, ["name", "devices", "release_id", "apps", "window"])


@group_app.command("show")
def group_show(ctx: typer.Context, group: str, json: bool = JsonOpt) -> None:
    """A group's devices, desired state, window, and the rollouts and bootstrap tokens that name it."""
    show(client(ctx).request("GET", f"/api/v1/groups/{group}"), json)


@group_app.command("create")
def group_create(ctx: typer.Context, group: str, json: bool = JsonOpt) -> None:
    """Create an empty group; add devices with 'group add-device' (or enroll them with a bootstrap token of it)."""
    show(client(ctx).request("POST", "/api/v1/groups", json={"name": group}), json)


@group_app.command("delete")
def group_delete(ctx: typer.Context, group: str, json: bool = JsonOpt) -> None:
    """Delete a group: refused while it has devices or rollouts or bootstrap tokens name it."""
    client(ctx).request("DELETE", f"/api/v1/groups/{group}")
    show({"deleted": group}, json)


@group_app.command("add-device")
def group_add_device(ctx: typer.Context, group: str, device: list[str], json: bool = JsonOpt) -> None:
    """Put devices into a group (running rollouts that target the group take them in)."""
    api = client(ctx)
    rows = [api.request("PUT", f"/api/v1/groups/{group}/devices/{d}") for d in device]
    show(rows, json, ["device", "groups"])


@group_app.command("remove-device")
def group_remove_device(ctx: typer.Context, group: str, device: list[str], json: bool = JsonOpt) -> None:
    """Take devices out of a group."""
    api = client(ctx)
    rows = [api.request("DELETE", f"/api/v1/groups/{group}/devices/{d}") for d in device]
    show(rows, json, ["device", "groups"])
