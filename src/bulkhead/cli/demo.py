"""`bulkhead demo`: the server on SQLite, a seeded demo tenant and releases, and a lab fleet that updates itself."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import typer
from rich.markup import escape

from bulkhead.lab.device import DeviceSpec
from bulkhead.lab.images import build_release
from bulkhead.lab.pki import make_pki
from bulkhead.lab.rauc_service import LabError

from . import output
from .errors import CliError
from .lab import start_lab, stop_lab

COMPATIBLE = "bulkhead-demo"


def _lab_missing() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    missing = [t for t in ("rauc", "dbus-daemon", "unshare", "mkfs.ext4", "mksquashfs") if shutil.which(t) is None]
    return f"missing {', '.join(missing)} (run 'make setup' as root)" if missing else None


def _ui_password(work: Path) -> str:
    """The demo tenant admin's web UI password: made once, kept in the demo's directory (mode 600)."""
    path = work / "ui.password"
    if not path.exists():
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(12) + "\n")
    return path.read_text().strip()


def seed(base: str, data_dir: Path, devices: int, json_out: bool = False) -> None:
    """Create tenant 'demo', its keyring, releases 1.0.0 and 1.1.0, and boot a lab fleet that moves to 1.1.0."""
    data_dir = data_dir.absolute()  # the lab writes these paths into RAUC's and the agents' configs
    admin = (data_dir / "admin.token").read_text().strip()
    work = data_dir / "demo"
    cred = work / "demo.token"
    pki = make_pki(work / "pki")
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(100):
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        if not cred.exists():
            r = http.post("/api/v1/tenants", json={"name": "demo"}, headers={"authorization": f"Bearer {admin}"})
            r.raise_for_status()
            cred.write_text(r.json()["token"])
            cred.chmod(0o600)
        h = {"authorization": f"Bearer {cred.read_text().strip()}"}
        ui_password = _ui_password(work)
        http.put("/api/v1/users/admin/password", json={"password": ui_password}, headers=h).raise_for_status()
        http.put("/api/v1/keyring", json={"pem": pki.ca.read_text()}, headers=h).raise_for_status()
        releases = {r["version"]: r for r in http.get("/api/v1/releases", params={"limit": 1000}, headers=h).json()}
        for v in ("1.0.0", "1.1.0"):
            if v not in releases:
                bundle = build_release(work, COMPATIBLE, v, pki.cert, pki.key)
                releases[v] = http.post("/api/v1/releases", content=bundle.read_bytes(), headers=h).json()
        boot = http.post("/api/v1/bootstrap-tokens", json={"name": "demo-fleet", "group": "demo"}, headers=h).json()
        http.patch("/api/v1/groups/demo/desired", json={"release_id": releases["1.1.0"]["id"]}, headers=h).raise_for_status()
    why_not = _lab_missing()
    started = 0
    if devices and why_not is None:
        specs = [
            DeviceSpec(f"demo-{i:03d}", base, boot["token"], COMPATIBLE, pki.ca, initial_version="1.0.0", poll_interval=5)
            for i in range(devices)
        ]
        try:
            start_lab(work / "lab", specs, tie_to_parent=True)
            started = devices
            fleet = f"{devices} lab devices (real RAUC service + agent each) moving from 1.0.0 to 1.1.0"
        except (CliError, LabError) as e:
            fleet = f"no lab fleet: {e}"
    else:
        fleet = f"no lab fleet ({why_not or 'devices=0'})"
    export = f"export BULKHEAD_SERVER={base} BULKHEAD_TOKEN=$(cat {cred})"
    if json_out:
        output.emit_json(
            {
                "server": base,
                "api_docs": f"{base}/docs",
                "tenant": "demo",
                "token_file": str(cred),
                "export": export,
                "releases": {v: releases[v]["id"] for v in ("1.0.0", "1.1.0")},
                "lab": str(work / "lab") if started else None,
                "devices": [f"demo-{i:03d}" for i in range(started)],
                "fleet": fleet,
                "ui": {"url": f"{base}/ui/", "tenant": "demo", "user": "admin", "password": ui_password},
            }
        )
        sys.stdout.flush()
        return
    output.err_console.print(f"[green]demo ready[/green]: tenant 'demo', releases 1.0.0 and 1.1.0, {escape(fleet)}.")
    # Lines to copy and paste: never wrapped at the terminal's width, never read as markup.
    output.line(f"  {export}")
    output.line(f"  web UI: {base}/ui/   tenant: demo   user: admin   password: {ui_password}")
    output.line(f"  .venv/bin/bulkhead device list     .venv/bin/bulkhead device events demo-000     API docs: {base}/docs")
    output.line(f"  .venv/bin/bulkhead lab status --dir {work / 'lab'}")


def demo(
    port: int = typer.Option(8080),
    data_dir: Path = typer.Option(Path("bulkhead-data")),
    devices: int = typer.Option(3, min=0, max=50, help="Lab devices to boot (needs root)"),
    json_out: bool = typer.Option(False, "--json", help="Print the ready summary as one JSON object on standard output"),
) -> None:
    """Run the server with a seeded demo tenant, releases and a lab fleet (Ctrl-C stops all of it)."""
    import uvicorn

    from bulkhead.server.app import create_app, system_token
    from bulkhead.server.settings import load_settings

    data_dir = data_dir.absolute()  # resolved once, here: everything below writes absolute paths
    settings = load_settings(data_dir=data_dir)
    system_token(settings.data_dir)
    (settings.data_dir / "demo").mkdir(exist_ok=True)
    stop_lab(settings.data_dir / "demo" / "lab")  # a lab left over from an earlier run
    app = create_app(settings)
    base = f"http://127.0.0.1:{port}"
    threading.Thread(target=seed, args=(base, settings.data_dir, devices, json_out), daemon=True).start()
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    finally:
        stop_lab(settings.data_dir / "demo" / "lab")
