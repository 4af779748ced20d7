"""Serving a 256 MiB bundle: full downloads and random 4 KiB / 64 KiB ranges, bulkhead vs nginx.

The columns serve the same file on loopback, load comes from wrk (Debian package `wrk`): plain nginx (no
authentication; the reference), bulkhead's embedded path (granian, the default, and uvicorn), and bulkhead behind
nginx with delivery offloaded (contrib/nginx/bulkhead-offload.conf: the server authorizes, nginx sends the bytes and
logs them for the byte counters), once with the device's signed URL (granted to nginx after the first request) and
once with its credential (each request authorized, the answer reused for 1 s).
Goals: the embedded path (granian) reaches at least half of nginx's throughput (issue #2); the offload with a signed
URL at least 90 % (#26).

Method (made for a small, shared machine, where a run-to-run spread of 10 points hides any configuration effect):
- setup (tenant, keyring, release upload, device enrolment) once, on the data directory all servers share, by a
  server stopped afterwards;
- only the measured column's processes run: --rounds rounds, in each of which every column in turn starts its
  processes, measures the three cases (for each, wrk untimed for --warmup s, then timed for --seconds s), stops
  them and checks that their ports are closed. Starting a bulkhead server took 4-13 s on a busy 2-core machine: a start per
  measurement instead of per round would add about 5 minutes to a default run;
- the column order is reversed every other round (nginx, signed, offload, granian, uvicorn, then backwards) so that drift
  favours no column;
- the table gives medians over the rounds, their ratio to nginx's, and the ratio paired per round (same case,
  same round) as median (min-max); the goals are checked on the median of the paired ratios. The notes give the
  load average at start and end, and say when the machine was busy at start (1-minute load average above 0.5).

Usage: .venv/bin/python bench/artifact_serving.py [--seconds 8] [--rounds 5] [--warmup 2] [--workers 2]
                                                  [--columns nginx,granian,uvicorn,signed,offload]
The defaults take about 16 minutes; `--columns nginx,signed,offload` (nginx is always measured) about 8.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, new_tenant, random_bundle, start_bulkhead, write_result

SIZE_MIB = 256
CASES = (("full download", None, 4), ("random 64 KiB ranges", 65536, 32), ("random 4 KiB ranges", 4096, 32))
LOADED = 0.5  # a 1-minute load average above this at start: the machine was busy
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
    """Requests/s and bytes/s; an error answer fails the run (a fast refusal would look like a fast server)."""
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
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        raise RuntimeError(f"{url}: {m.group(1)} error answers under load:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    assert m is not None
    unit = {"B": 1, "KB": 1e3 * 1.024, "MB": 1.048576e6, "GB": 1.073741824e9}[m.group(2)]
    return rps, float(m.group(1)) * unit


def wait_port(port: int, listening: bool, timeout: float = 20) -> None:
    """Until something accepts connections on the port (listening=True) or nothing does any more."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            accepts = s.connect_ex(("127.0.0.1", port)) == 0
        if accepts == listening:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} {'never opened' if listening else 'still open after the processes stopped'}")
        time.sleep(0.05)


def start_nginx(root: Path, port: int, tmp: Path) -> subprocess.Popen[bytes]:
    """Plain nginx serving `root` (2 workers, sendfile), once it accepts connections."""
    conf = tmp / "nginx.conf"
    conf.write_text(f"""worker_processes 2; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nodelay on; max_ranges 16;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)], stderr=subprocess.DEVNULL)
    wait_port(port, listening=True)
    return proc


OFFLOAD_CONF = Path(__file__).resolve().parents[1] / "contrib" / "nginx" / "bulkhead-offload.conf"


def start_offload_nginx(data: Path, upstream: int, port: int, tmp: Path) -> subprocess.Popen[bytes]:
    """nginx with contrib/nginx/bulkhead-offload.conf as shipped (only ports and paths replaced), tuned as above."""
    work = tmp / "offload-nginx"
    work.mkdir(exist_ok=True)
    conf = OFFLOAD_CONF.read_text()
    for old, new in [
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream};"),
        ("/var/lib/bulkhead/artifacts", str(data / "artifacts")),
        ("/var/lib/bulkhead/offload-grants", str(data / "offload-grants")),
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
    wait_port(port, listening=True)
    return proc


@dataclass(frozen=True)
class Setup:
    """What every column serves: the plain file for nginx, the release in the shared data directory for the rest."""

    tmp: Path
    www: Path
    data: Path
    release: int
    credential: str
    signed: str  # the device's signed URL of the release, path and query (what RAUC streams from)
    workers: int

    def bundle_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/device/v1/releases/{self.release}/bundle"


@dataclass
class Running:
    """A column's processes while it is measured: stopped in this order, then their ports must be closed."""

    url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        for port in self.ports:
            wait_port(port, listening=False, timeout=5)


def run_nginx(s: Setup) -> Running:
    port = free_port()
    return Running(f"http://127.0.0.1:{port}/bundle.raucb", [start_nginx(s.www, port, s.tmp)], [port])


def run_granian(s: Setup) -> Running:
    port = free_port()
    return Running(s.bundle_url(port), [start_bulkhead(s.data, port, s.workers)], [port])


def run_uvicorn(s: Setup) -> Running:
    port = free_port()
    return Running(s.bundle_url(port), [start_bulkhead(s.data, port, s.workers, {"BULKHEAD_HTTP_SERVER": "uvicorn"})], [port])


def run_offload(s: Setup) -> Running:
    sp, np_ = free_port(), free_port()
    env = {"BULKHEAD_DELIVERY_OFFLOAD": "x-accel", "BULKHEAD_DELIVERY_OFFLOAD_LOG": str(s.tmp / "delivery.log")}
    running = Running(s.bundle_url(np_), [], [np_, sp])
    srv = start_bulkhead(s.data, sp, s.workers, env)  # granian
    try:
        nginx = start_offload_nginx(s.data.resolve(), sp, np_, s.tmp)
        running.procs = [nginx, srv]  # nginx stops first: it flushes its delivery log, which the server reads
    except BaseException:
        srv.terminate()
        srv.wait(30)
        raise
    return running


def run_offload_signed(s: Setup) -> Running:
    running = run_offload(s)
    running.url = running.url.split("/device/")[0] + s.signed
    return running


@dataclass(frozen=True)
class Column:
    start: Callable[[Setup], Running]
    auth: bool  # requests carry the device's credential
    head: tuple[str, ...]  # the table's headings: req/s, MB/s[, / nginx, per round]
    goal: float | None = None  # the least paired ratio to nginx, checked in every case


# In the table's order; nginx first, the reference of every ratio.
COLUMNS = {
    "nginx": Column(run_nginx, False, ("nginx req/s", "nginx MB/s")),
    "granian": Column(run_granian, True, ("bulkhead req/s", "bulkhead MB/s", "bulkhead / nginx", "per round"), 0.5),
    "uvicorn": Column(run_uvicorn, True, ("with uvicorn: req/s", "MB/s", "/ nginx", "per round")),
    "signed": Column(run_offload_signed, False, ("offload, signed URL: req/s", "MB/s", "/ nginx", "per round"), 0.9),
    "offload": Column(run_offload, True, ("offload, device token: req/s", "MB/s", "/ nginx", "per round")),
}
MEASURE_ORDER = ("nginx", "signed", "offload", "granian", "uvicorn")  # in even rounds; odd rounds backwards

Samples = dict[tuple[str, str], list[tuple[float, float]]]  # (case, column) -> (req/s, bytes/s) per round


def round_order(columns: list[str], r: int) -> list[str]:
    order = [c for c in MEASURE_ORDER if c in columns]
    return order if r % 2 == 0 else order[::-1]


def summarize(samples: Samples, columns: list[str]) -> tuple[list[list[str]], dict[str, bool]]:
    """The table (medians, ratio of medians, paired ratios' median (min-max)) and each goal's verdict."""
    cols = [c for c in COLUMNS if c in columns]
    head = ["case"] + [h for c in cols for h in COLUMNS[c].head]
    rows, verdicts = [head], {c: True for c in cols if COLUMNS[c].goal is not None}
    for case, _, _ in CASES:
        ref = samples[(case, "nginx")]
        ref_bps = statistics.median(b for _, b in ref)
        row = [case]
        for c in cols:
            got = samples[(case, c)]
            bps = statistics.median(b for _, b in got)
            row += [f"{statistics.median(r for r, _ in got):.0f}", f"{bps / 1e6:.0f}"]
            if c == "nginx":
                continue
            paired = [b / rb for (_, b), (_, rb) in zip(got, ref, strict=True)]
            mid = statistics.median(paired)
            row += [f"{bps / ref_bps:.0%}", f"{mid:.0%} ({min(paired) * 100:.0f}-{max(paired):.0%})"]
            if (goal := COLUMNS[c].goal) is not None:
                verdicts[c] &= mid >= goal
        rows.append(row)
    return rows, verdicts


def setup(tmp: Path, workers: int) -> Setup:
    """The plain file for nginx; tenant, keyring, release and an enrolled device, made by a server then stopped."""
    path, ca = bundle()
    www = tmp / "www"
    www.mkdir()
    if path.stat().st_dev == www.stat().st_dev:
        os.link(path, www / "bundle.raucb")
    else:
        shutil.copy(path, www / "bundle.raucb")
    data, port = tmp / "data", free_port()
    srv = start_bulkhead(data, port, 1)
    try:
        base = f"http://127.0.0.1:{port}"
        _, h = new_tenant(base, data)
        httpx.put(base + "/api/v1/keyring", json={"pem": ca.read_text()}, headers=h).raise_for_status()
        r = httpx.post(base + "/api/v1/releases", content=path.read_bytes(), headers=h, timeout=300)
        r.raise_for_status()
        boot = httpx.post(base + "/api/v1/bootstrap-tokens", json={"name": "b"}, headers=h).json()["token"]
        dev = httpx.post(base + "/device/v1/enroll", json={"bootstrap_token": boot, "name": "bench", "compatible": "bench"})
        dev.raise_for_status()
        cred = dev.json()["credential"]
        desired = {"release_id": r.json()["id"]}
        httpx.put(base + "/api/v1/devices/bench/desired-release", json=desired, headers=h).raise_for_status()
        state = httpx.get(base + "/device/v1/state", headers={"authorization": f"Bearer {cred}"}).json()
        signed = "/dl/" + state["desired"]["release"]["signed_url"].split("/dl/", 1)[1]  # valid for an hour
    finally:
        Running("", [srv], [port]).stop()
    return Setup(tmp, www, data, int(r.json()["id"]), cred, signed, workers)


def load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in avg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=8, help="timed wrk run per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="untimed wrk run before each timed one")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--columns", default=",".join(COLUMNS), help="which of %(default)s (nginx is always measured)")
    args = ap.parse_args()
    columns = ["nginx", *dict.fromkeys(c.strip() for c in args.columns.split(",") if c.strip() and c.strip() != "nginx")]
    if unknown := [c for c in columns if c not in COLUMNS]:
        sys.exit(f"unknown columns {', '.join(unknown)}: choose among {', '.join(COLUMNS)}")
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        sys.exit("this benchmark needs Debian's wrk and nginx: apt-get install wrk nginx")
    began, load_start = time.monotonic(), os.getloadavg()
    busy = load_start[0] > LOADED
    if busy:
        print(
            f"warning: 1-minute load average {load_start[0]:.2f} > {LOADED} at start: the machine is busy, "
            "every column is slowed and the spread grows",
            file=sys.stderr,
        )
    n, starts = len(columns) * len(CASES) * args.rounds, (len(columns) - 1) * args.rounds
    guess = n * (args.warmup + args.seconds) + starts * 7 + 30  # a bulkhead server's start and stop, the setup
    print(
        f"{n} measurements of {args.warmup} + {args.seconds} s, {starts} server starts: about {guess / 60:.0f} min",
        file=sys.stderr,
    )
    samples: Samples = {}
    overhead: dict[str, list[float]] = {}  # seconds to start and stop a column's processes, per round
    with tempfile.TemporaryDirectory() as tmpd:
        s = setup(Path(tmpd), args.workers)
        size = (s.www / "bundle.raucb").stat().st_size
        for r in range(args.rounds):
            for c in round_order(columns, r):
                token = s.credential if COLUMNS[c].auth else None
                t0 = time.monotonic()
                running = COLUMNS[c].start(s)
                t1 = time.monotonic()
                try:
                    for case, span, conns in CASES:
                        wrk(running.url, args.warmup, span, size, token, conns)
                        rps, bps = wrk(running.url, args.seconds, span, size, token, conns)
                        samples.setdefault((case, c), []).append((rps, bps))
                        print(f"round {r + 1}/{args.rounds}, {c}, {case}: {rps:.0f} req/s, {bps / 1e6:.0f} MB/s", file=sys.stderr)
                finally:
                    t2 = time.monotonic()
                    running.stop()
                    overhead.setdefault(c, []).append(t1 - t0 + time.monotonic() - t2)
                print(
                    f"round {r + 1}/{args.rounds}, {c}: start {t1 - t0:.1f} s, stop {time.monotonic() - t2:.1f} s",
                    file=sys.stderr,
                )
    rows, verdicts = summarize(samples, columns)
    met = {c: "met" if ok else "NOT met" for c, ok in verdicts.items()}
    notes = [
        f"Method: {args.rounds} rounds; in each, every column in turn ({', '.join(round_order(columns, 0))}, "
        f"backwards every other round) starts its processes, measures the three cases and stops them: only the "
        f"measured column's processes run. wrk, 2 threads, per case {args.warmup} s untimed then {args.seconds} s "
        f"timed (4 connections for full downloads, 32 for ranges). Figures: medians over rounds; `/ nginx`: ratio "
        f"of the medians; `per round`: the ratio to nginx within each round, median (min-max), on which the goals "
        f"are checked.",
        f"nginx: 2 workers, sendfile on. bulkhead: `bulkhead server --workers {args.workers}` (granian, the default; "
        f"whole files through its pathsend extension), and the same with `--http-server uvicorn`; device credential "
        f"auth on every request. Goal: >= 50% of nginx in each case. Result: {met.get('granian', 'not measured')}.",
        f"nginx offload: `BULKHEAD_DELIVERY_OFFLOAD=x-accel`, the same server settings behind nginx with "
        f"contrib/nginx/bulkhead-offload.conf as shipped (2 workers; the bytes sent by nginx and logged for the byte "
        f"counters, which the server reads meanwhile), in two columns. `signed URL`: the device's signed URL of the "
        f"release, what RAUC streams a bundle from (its thousands of range requests) and the agent downloads: the server "
        f"authorizes the first request and grants the URL to nginx, which answers the rest alone while the grant "
        f"exists (delivery/grants.py). Goal: >= 90% of plain nginx in each case. Result: "
        f"{met.get('signed', 'not measured')}. `device token`: the device's credential on every request (its own "
        f"downloads and their resumption): each authorized by the server, whose answer nginx reuses for 1 s per URL "
        f"and credential through an auth_request subrequest and its proxy cache (docs/adr/0008 says what that costs).",
        f"Load average (1/5/15 min) at start {load(load_start)}, at end {load(os.getloadavg())}; wall time "
        f"{(time.monotonic() - began) / 60:.1f} min; starting and stopping a column's processes took "
        + ", ".join(f"{c} {statistics.mean(overhead[c]):.1f} s" for c in columns)
        + " on average."
        + (
            f" The machine was busy at start (1-minute load above {LOADED}): other work shared its cores, which "
            "lowers every column and widens the spread; these figures are less trustworthy than an idle machine's."
            if busy
            else ""
        ),
    ]
    write_result("artifact_serving", f"Serving a {SIZE_MIB} MiB bundle over loopback", rows, notes="\n\n".join(notes))


if __name__ == "__main__":
    main()
