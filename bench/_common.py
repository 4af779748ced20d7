"""Shared helpers for benchmarks: the machine's description and result files."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    kernel = platform.release()
    py = platform.python_version()
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {kernel}, Python {py}"


def write_result(name: str, title: str, table: list[list[str]], notes: str = "") -> Path:
    RESULTS.mkdir(exist_ok=True)
    head, *rows = table
    lines = [
        f"# {title}",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {machine()}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if notes:
        lines += ["", notes]
    out = RESULTS / f"{name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())
    return out


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)  # type: ignore[call-overload, no-any-return]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_bulkhead(data: Path, port: int, workers: int = 1, env_extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`bulkhead server` on loopback, waited for until it answers."""
    import httpx

    env = {**os.environ, "BULKHEAD_DATA_DIR": str(data), "BULKHEAD_MAX_UPLOAD_BYTES": str(1 << 30), **(env_extra or {})}
    cmd = [sys.executable, "-m", "bulkhead.cli", "server", "--port", str(port), "--data-dir", str(data)]
    # Its warnings and errors go to a file beside its data directory (appended: a bench may restart a server).
    log = (data.parent / "server.log").open("ab")
    proc = subprocess.Popen([*cmd, "--workers", str(workers), "--log-level", "warning"], env=env, stderr=log)
    log.close()
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc


def random_bundle(name: str, size_mib: int, compatible: str = "bench") -> tuple[Path, Path]:
    """A cached plain bundle with `size_mib` of random image data (uncompressed squashfs); returns it and the CA."""
    import shutil

    from bulkhead.lab.pki import make_pki
    from bulkhead.rauc import create_bundle

    pki = make_pki(CACHE / "pki")
    out = CACHE / f"{name}-{size_mib}m.raucb"
    if not out.exists():
        content = CACHE / f"{name}-content"
        content.mkdir(parents=True, exist_ok=True)
        (content / "rootfs.img").write_bytes(os.urandom(size_mib << 20))
        (content / "manifest.raucm").write_text(
            f"[update]\ncompatible={compatible}\nversion=2\n\n[image.rootfs]\nfilename=rootfs.img\n"
        )
        create_bundle(content, out, pki.cert.read_bytes(), pki.key.read_bytes(), mksquashfs_args=["-noI", "-noD", "-noF", "-noX"])
        shutil.rmtree(content)
    return out, pki.ca


def new_tenant(base: str, data: Path, name: str = "bench") -> tuple[int, dict[str, str]]:
    """A tenant made with the admin token a started server wrote to its data directory: its id and the
    authorization header of its admin token."""
    import httpx

    admin = (data / "admin.token").read_text().strip()
    r = httpx.post(base + "/api/v1/tenants", json={"name": name}, headers={"authorization": f"Bearer {admin}"})
    r.raise_for_status()
    return int(r.json()["id"]), {"authorization": f"Bearer {r.json()['token']}"}
