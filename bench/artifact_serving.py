"""Serving a 256 MiB bundle: full downloads and random 4 KiB / 64 KiB ranges, bulkhead vs nginx.

All serve the same file on loopback in one run; load comes from wrk (Debian package `wrk`):
plain nginx (no authentication), bulkhead's embedded path (granian and uvicorn), and bulkhead behind nginx with
delivery offloaded (contrib/nginx/bulkhead-offload.conf: the server authorizes, nginx reuses its answer for 1 s,
sends the bytes and logs them for the byte counters).
Goals: the embedded path reaches at least half of nginx's throughput (issue #2); the offload at least 90 % (#26).
Usage: .venv/bin/python bench/artifact_serving.py [--seconds 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, random_bundle, start_bulkhead, write_result

SIZE_MIB = 256
LUA = """
math.randomseed(os.time())
local size = {size}
local span = {span}
request = function()
  local start = math.random(0, size - span)
  return wrk.format("GET", wrk.path, {{["Range"] = "bytes=" .. start .. "-" .. (start + span - 1){auth}}})
end
"""


def bundle() -> tuple[Path, Path]:
    return random_bundle("serve", SIZE_MIB)


def wrk(url: str, seconds: int, span: int | None, size: int, token: str | None, conns: int) -> tuple[float, float]:
    """Requests/s and bytes/s."""
    cmd = ["wrk", "-t", "2", "-c", str(conns), "-d", f"{seconds}s", "--latency"]
    auth = f', ["Authorization"] = "Bearer {token}"' if token else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if span is None:
            f.write(
                "request = function() return wrk.format('GET', wrk.path" + (", {" + auth[2:] + "}" if token else "") + ") end\n"
            )
        else:
            f.write(LUA.format(size=size, span=span, auth=auth))
        script = f.name
    out = subprocess.run([*cmd, "-s", script, url], capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    assert m is not None
    unit = {"B": 1, "KB": 1e3 * 1.024, "MB": 1.048576e6, "GB": 1.073741824e9}[m.group(2)]
    return rps, float(m.group(1)) * unit


def start_nginx(root: Path, port: int, tmp: Path) -> subprocess.Popen[bytes]:
    conf = tmp / "nginx.conf"
    conf.write_text(f"""worker_processes 2; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nodelay on; max_ranges 16;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)], stderr=subprocess.DEVNULL)
    time.sleep(1)
    return proc


OFFLOAD_CONF = Path(__file__).resolve().parents[1] / "contrib" / "nginx" / "bulkhead-offload.conf"


def start_offload_nginx(store: Path, upstream: int, port: int, tmp: Path) -> subprocess.Popen[bytes]:
    """nginx with contrib/nginx/bulkhead-offload.conf as shipped (only ports and paths replaced), tuned as above."""
    work = tmp / "offload-nginx"
    work.mkdir()
    conf = OFFLOAD_CONF.read_text()
    for old, new in [
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream};"),
        ("/var/lib/bulkhead/artifacts", str(store)),
        ("/var/cache/nginx/bulkhead-auth", str(work / "auth-cache")),
        ("/var/log/nginx/bulkhead-delivery.log", str(tmp / "delivery.log")),
    ]:
        assert old in conf, f"contrib/nginx/bulkhead-offload.conf no longer has {old!r}"
        conf = conf.replace(old, new)
    (work / "offload.conf").write_text(conf)
    # Workers run as the server's user: they read its artifact store (docs/deployment.md).
    (work / "nginx.conf").write_text(f"""user {getpass.getuser()}; worker_processes 2; daemon off; pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; tcp_nodelay on; max_ranges 16;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work}; scgi_temp_path {work};
  include {work}/offload.conf; }}
""")
    proc = subprocess.Popen(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)], stderr=subprocess.DEVNULL)
    time.sleep(1)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        sys.exit("this benchmark needs Debian's wrk and nginx: apt-get install wrk nginx")
    path, ca = bundle()
    size = path.stat().st_size
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        www = tmp / "www"
        www.mkdir()
        os.link(path, www / "bundle.raucb") if path.stat().st_dev == www.stat().st_dev else shutil.copy(
            path, www / "bundle.raucb"
        )
        np, bp, up = free_port(), free_port(), free_port()
        nginx = start_nginx(www, np, tmp)
        data = tmp / "data"
        srv = start_bulkhead(data, bp, args.workers)  # the default HTTP server, granian
        srv_uvicorn = srv_offload = offload_nginx = None
        try:
            base = f"http://127.0.0.1:{bp}"
            admin = (data / "admin.token").read_text().strip()
            token = httpx.post(
                base + "/api/v1/tenants", json={"name": "bench"}, headers={"authorization": f"Bearer {admin}"}
            ).json()["token"]
            h = {"authorization": f"Bearer {token}"}
            httpx.put(base + "/api/v1/keyring", json={"pem": ca.read_text()}, headers=h).raise_for_status()
            rel = httpx.post(base + "/api/v1/releases", content=path.read_bytes(), headers=h, timeout=300).json()
            boot = httpx.post(base + "/api/v1/bootstrap-tokens", json={"name": "b"}, headers=h).json()["token"]
            dev = httpx.post(
                base + "/device/v1/enroll", json={"bootstrap_token": boot, "name": "bench", "compatible": "bench"}
            ).json()
            srv_uvicorn = start_bulkhead(data, up, args.workers, {"BULKHEAD_HTTP_SERVER": "uvicorn"})  # same data
            op, onp = free_port(), free_port()
            offload_env = {"BULKHEAD_DELIVERY_OFFLOAD": "x-accel", "BULKHEAD_DELIVERY_OFFLOAD_LOG": str(tmp / "delivery.log")}
            srv_offload = start_bulkhead(data, op, args.workers, offload_env)  # same data, granian
            offload_nginx = start_offload_nginx((data / "artifacts").resolve(), op, onp, tmp)
            o_url = f"http://127.0.0.1:{onp}/device/v1/releases/{rel['id']}/bundle"
            b_url = f"{base}/device/v1/releases/{rel['id']}/bundle"
            u_url = f"http://127.0.0.1:{up}/device/v1/releases/{rel['id']}/bundle"
            n_url = f"http://127.0.0.1:{np}/bundle.raucb"
            head = ["case", "nginx req/s", "nginx MB/s", "bulkhead req/s", "bulkhead MB/s", "bulkhead / nginx"]
            rows = [[*head, "with uvicorn: req/s", "MB/s", "/ nginx", "nginx offload: req/s", "MB/s", "/ nginx"]]
            verdict = offload_verdict = True
            for name, span, conns in (
                ("full download", None, 4),
                ("random 64 KiB ranges", 65536, 32),
                ("random 4 KiB ranges", 4096, 32),
            ):
                n_rps, n_bps = wrk(n_url, args.seconds, span, size, None, conns)
                b_rps, b_bps = wrk(b_url, args.seconds, span, size, dev["credential"], conns)
                u_rps, u_bps = wrk(u_url, args.seconds, span, size, dev["credential"], conns)
                o_rps, o_bps = wrk(o_url, args.seconds, span, size, dev["credential"], conns)
                ratio = b_bps / n_bps
                verdict &= ratio >= 0.5
                offload_verdict &= o_bps / n_bps >= 0.9
                ours = [f"{b_rps:.0f}", f"{b_bps / 1e6:.0f}", f"{ratio * 100:.0f}%"]
                uvi = [f"{u_rps:.0f}", f"{u_bps / 1e6:.0f}", f"{u_bps / n_bps * 100:.0f}%"]
                off = [f"{o_rps:.0f}", f"{o_bps / 1e6:.0f}", f"{o_bps / n_bps * 100:.0f}%"]
                rows.append([name, f"{n_rps:.0f}", f"{n_bps / 1e6:.0f}", *ours, *uvi, *off])
        finally:
            for p in (srv, srv_uvicorn, srv_offload, offload_nginx, nginx):
                if p is not None:
                    p.send_signal(signal.SIGTERM)
                    p.wait(20)
    write_result(
        "artifact_serving",
        f"Serving a {SIZE_MIB} MiB bundle over loopback",
        rows,
        notes=f"nginx: 2 workers, sendfile on. bulkhead: `bulkhead server --workers {args.workers}` (granian, the "
        f"default; whole files through its pathsend extension), and the same with `--http-server uvicorn`; device "
        f"credential auth on every request. Load: wrk, 2 threads, {args.seconds} s per case (4 connections for full "
        f"downloads, 32 for ranges). Goal: >= 50% of nginx in each case. Result: {'met' if verdict else 'NOT met'}. "
        f"nginx offload: `BULKHEAD_DELIVERY_OFFLOAD=x-accel`, the same server settings behind nginx with "
        f"contrib/nginx/bulkhead-offload.conf as shipped (2 workers; every request authorized by the server, whose "
        f"answer nginx reuses for 1 s per URL and credential, here one device's; the bytes sent by nginx and logged for "
        f"the byte counters, which the server reads meanwhile). Goal: >= 90% of plain nginx in "
        f"each case. Result: {'met' if offload_verdict else 'NOT met'}.",
    )


if __name__ == "__main__":
    main()
