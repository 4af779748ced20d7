"""`bulkhead demo`: the server on SQLite plus a seeded demo tenant, release and fleet."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import typer

from bulkhead.lab.pki import make_pki
from bulkhead.rauc import create_bundle

from . import output


def _demo_bundle(work: Path, version: str, cert: Path, key: Path) -> Path:
    content = work / f"content-{version}"
    content.mkdir(parents=True, exist_ok=True)
    (content / "rootfs.img").write_bytes((f"demo rootfs {version}\n".encode() * 4096)[: 1 << 20].ljust(1 << 20, b"\0"))
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible=bulkhead-demo\nversion={version}\ndescription=Demo release {version}\n\n"
        "[image.rootfs]\nfilename=rootfs.img\nadaptive=block-hash-index;\n"
    )
    out = work / f"demo-{version}.raucb"
    if not out.exists():
        create_bundle(content, out, cert.read_bytes(), key.read_bytes(), fmt="verity")
    return out


def seed(base: str, data_dir: Path, devices: int) -> None:
    """Create tenant 'demo', its keyring, two releases and an enrolled fleet (idempotent)."""
    admin = (data_dir / "admin.token").read_text().strip()
    cred = data_dir / "demo" / "demo.token"
    work = data_dir / "demo"
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
        http.put("/api/v1/keyring", json={"pem": pki.ca.read_text()}, headers=h).raise_for_status()
        for v in ("1.0.0", "1.1.0"):
            bundle = _demo_bundle(work, v, pki.cert, pki.key)
            http.post("/api/v1/releases", content=bundle.read_bytes(), headers=h)
        boot = http.post("/api/v1/bootstrap-tokens", json={"name": "demo-fleet", "group": "demo"}, headers=h).json()
        for i in range(devices):
            http.post(
                "/device/v1/enroll",
                json={"bootstrap_token": boot["token"], "name": f"demo-{i:03d}", "compatible": "bulkhead-demo"},
            ).raise_for_status()
    output.err_console.print(
        f"[green]demo ready[/green]: tenant 'demo', {devices} enrolled devices, releases 1.0.0 and 1.1.0.\n"
        f"  export BULKHEAD_SERVER={base} BULKHEAD_TOKEN=$(cat {cred})\n"
        f"  .venv/bin/bulkhead device list     .venv/bin/bulkhead release list     API docs: {base}/docs"
    )


def demo(
    port: int = typer.Option(8080),
    data_dir: Path = typer.Option(Path("bulkhead-data")),
    devices: int = typer.Option(5, min=0, help="Simulated devices to enroll"),
) -> None:
    """Run the server with a seeded demo tenant, releases and fleet (Ctrl-C stops it)."""
    import uvicorn

    from bulkhead.server.app import create_app, system_token
    from bulkhead.server.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    system_token(settings.data_dir)
    (settings.data_dir / "demo").mkdir(exist_ok=True)
    app = create_app(settings)
    threading.Thread(target=seed, args=(f"http://127.0.0.1:{port}", settings.data_dir, devices), daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
