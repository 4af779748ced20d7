"""Fleet scale (issue 26 part 0): the server at N devices (default 100,000) on PostgreSQL, side by side with a reference.

One run measures two servers one after the other, each with its own code, its own PostgreSQL database (its own
migrations) and `bulkhead server --workers 2` (granian): the reference, the source tree at a git commit
(`--reference REV`, default 05bdbed: main before the scale work, exported with `git archive`), and "now", the working
tree this script lives in. For each side:

1. device reports, `POST /device/v1/reports` under wrk (2 threads, 64 connections, Lua rotating over device credentials,
   each device's seq numbers increasing): one event per report, and five events plus a 400-package inventory; then the
   database is checked: every event of every answered report is stored once (lost = gaps in a device's seq numbers,
   doubled = the same seq twice), and wrk's non-2xx answers are counted; each measured pass follows a first pass over
   the same devices (its rate is shown too), as a fleet that reports every few minutes keeps the server warm;
2. `POST /api/v1/rollouts` to every device in two phases (a 10 % canary, then the other 90 %), and one created with a
   start tomorrow (its first phase opened later by the evaluation step below);
3. rollout progress `GET /api/v1/rollouts/{id}`, and the lists: `GET /api/v1/devices` first page, a deep page (found by
   following the `X-Next-Cursor` header; the reference has no paging, so its "first page" is the whole fleet),
   `?tag=` filtered, `GET /api/v1/rollouts/{id}/actions`, the group list and the rollout list: p50/p99 and bytes (wrk
   when a request takes under a second, else a few requests one after the other: "max of n" stands in for p99);
4. each server worker's RSS (VmRSS, and the peak VmHWM) at start, after all of the above and 40 s later (idle: the
   server trims its heap every 30 s);
5. evaluation steps, with the server stopped (so its periodic sweep cannot interfere), timing one
   `RolloutService.advance(id)` in a subprocess that imports the side's own code against its database: the step that
   starts the first phase, one with nothing to do, the one that starts the 90 % phase after the canary's actions were
   set to success (through the side's own `record_status`, as a device's report would), one with nothing to do at N
   actions, the one that finishes the rollout, one on the finished rollout, and the periodic sweep (`advance(None)`);
6. polls/s (`GET /device/v1/state`, after passes that fill the poll caches) and reports/s with 1 and with 2 server
   worker processes ("now" only, unless `--scaling-reference`); measured first, on the fleet as seeded (no rollout).

The devices are seeded with SQLAlchemy core inserts by each side's own models (credentials hashed by its own
`hash_token`), spread over 10 groups and 100 site tags, each with a small reported inventory; then the database is
vacuumed and analyzed, as autovacuum does after a bulk load, and mapped by one vulnerability scan, as the server's
periodic scan maps a live fleet. A measurement that fails
(say, an endpoint the reference does not have) is reported as "n/a (why)" and the run goes on.
Writes bench/results/scale.md.

Needs PostgreSQL (BULKHEAD_BENCH_PG_URL, default the test database's server) and wrk. Run:
    .venv/bin/python bench/scale.py [--devices 100000] [--reference 05bdbed] [--seconds 10]
    .venv/bin/python bench/scale.py --quick          # 2,000 devices, short runs: checks the harness
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import free_port, random_bundle, start_bulkhead, write_result  # noqa: E402

PG = os.environ.get("BULKHEAD_BENCH_PG_URL", "postgresql://bulkhead:bulkhead@127.0.0.1:5432/bulkhead_test")
DEVICE_PREFIX = "bhd_"  # bulkhead.server.security.PREFIX_DEVICE, the same on both sides
SITES, GROUPS = 100, 10
CONNS = 64
IDLE = 40  # seconds without requests before the idle RSS is read
GOALS = {
    "reports1": ">= 3,333/s, p99 <= 100 ms",
    "reports5": ">= 1,000/s, p99 <= 100 ms",
    "intact": "0 lost, 0 doubled",
    "create": "<= 2 s",
    "step": "<= 0.5 s",
    "finished": "costs nothing",
    "progress": "<= 100 ms",
    "list": "p99 <= 100 ms",
    "rss": "<= 300 MiB",
}


# -- small tools ---------------------------------------------------------------------------------------------------
def na(why: object) -> str:
    text = " ".join(str(why).split())
    return f"n/a ({text[:160]})"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:,.0f} s"


def size(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else f"{n / 1e3:,.0f} kB" if n < 10_000_000 else f"{n / 1e6:,.0f} MB"


@dataclass
class Wrk:
    rps: float
    p50: float  # ms
    p99: float  # ms
    requests: int
    non2xx: int
    timeouts: int
    errors: list[str] = field(default_factory=list)  # the first non-2xx answers, when the script prints them

    def line(self, unit: str = "/s") -> str:
        bad = []
        if self.non2xx:
            bad.append(f"{self.non2xx:,} non-2xx" + (f", first: {self.errors[0][:100]}" if self.errors else ""))
        if self.timeouts:
            bad.append(f"{self.timeouts:,} timeouts")
        return f"{self.rps:,.0f}{unit}, p50 {self.p50:,.1f} ms, p99 {self.p99:,.1f} ms" + (f" ({', '.join(bad)})" if bad else "")


def wrk(url: str, seconds: float, script: str | None = None, conns: int = CONNS, headers: dict[str, str] | None = None) -> Wrk:
    cmd = ["wrk", "-t", "2", "-c", str(conns), "-d", f"{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    path = None
    if script:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(script)
            path = f.name
        cmd += ["-s", path]
    try:
        done = subprocess.run([*cmd, url], capture_output=True, text=True, check=True, timeout=seconds + 60)
    finally:
        if path:
            os.unlink(path)
    out = done.stdout
    m = re.search(r"(\d+) requests in", out)
    if m is None or int(m.group(1)) == 0:
        said = " | ".join(line.strip() for line in (out + done.stderr).splitlines() if line.strip())
        raise RuntimeError(f"wrk completed no request: {said[-600:]}")

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s|m)\b", out)
        if m is None:
            raise RuntimeError(f"no {p}% latency in wrk's output")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[m.group(2)]

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    timeouts = re.search(r"timeout (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps is not None, out
    return Wrk(
        float(rps.group(1)),
        pct("50"),
        pct("99"),
        int(m.group(1)),
        int(non2xx.group(1)) if non2xx else 0,
        int(timeouts.group(1)) if timeouts else 0,
        [line[7:] for line in out.splitlines() if line.startswith("NON2XX ")],
    )


def lua_list(items: list[str]) -> str:
    return ",".join(f'"{x}"' for x in items)


POLL_LUA = """
local tokens = {{{tokens}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/device/v1/state", {{["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1]}})
end
"""

# Each wrk thread reports as its own share of the devices (device k belongs to thread k % 2), visiting them in turn;
# a device's seq numbers go up by K per visit from BASE, so a device is never in flight twice and no seq repeats.
REPORT_LUA = """
local tokens = {{{tokens}}}
local NT, BASE, K, REL = 2, {base}, {k}, {rel}
local PHASES = {{"downloading", "downloading", "downloading", "downloaded", "installing"}}
local INV_A, INV_B = {inv_a}, {inv_b}
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local i = 0
request = function()
  local per = math.floor((#tokens - tid - 1) / NT) + 1
  local slot, visit = i % per, math.floor(i / per)
  i = i + 1
  local token = tokens[tid + NT * slot + 1]
  local events, seq = {{}}, 0
  for j = 1, K do
    seq = BASE + visit * K + j
    events[j] = '{{"seq":' .. seq .. ',"kind":"update","phase":"' .. PHASES[j] .. '","release_id":' .. REL
      .. ',"details":{{"version":"2","progress":' .. (j * 20) .. '}},"at":"2026-12-03T00:00:00+00:00"}}'
  end
  local body = '{{"events":[' .. table.concat(events, ",") .. ']'
  if INV_A then body = body .. ',"inventory":' .. INV_A .. seq .. INV_B end
  return wrk.format("POST", "/device/v1/reports",
    {{["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}}, body .. "}}")
end
local shown = 0
response = function(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    print("NON2XX " .. status .. " " .. string.sub(string.gsub(body, "%s+", " "), 1, 200))
  end
end
"""


def lua_str(s: str | None) -> str:
    return "nil" if s is None else f"[==[{s}]==]"


def inventory(packages: int, changing: bool) -> dict[str, Any]:
    """An agent's inventory (bulkhead.agent.inventory.build): RAUC slots, os-release, containers, dpkg packages."""
    pkgs = {f"pkg{i:03d}-{'lib' if i % 3 else 'bin'}": f"{i % 7}.{i % 13}.{i % 5}-{i % 3 + 1}+deb12u1" for i in range(packages)}
    if changing:
        pkgs["zz-bench-changing"] = "@SEQ@"  # one package that changed since the last report (the agent sends changes)
    slot = {"bootname": "A", "state": "booted", "boot_status": "good", "version": "1"}
    return {
        "agent_version": "0.1.0",
        "os_version": "1",
        "rauc": {"compatible": "bench", "booted": "A", "primary": "rootfs.0", "slots": {"rootfs.0": slot, "rootfs.1": slot}},
        "os_release": {"ID": "bulkhead", "NAME": "Bulkhead OS", "VERSION_ID": "1", "PRETTY_NAME": "Bulkhead OS 1"},
        "containers": [{"name": "web", "app": "web", "version": "3", "state": "running"}],
        "packages": {"format": "dpkg", "count": len(pkgs), "packages": pkgs},
    }


@dataclass
class Get:
    p50: float  # s
    p99: float  # s
    bytes: int
    how: str
    items: int | None = None

    def line(self) -> str:
        items = f", {self.items:,} items" if self.items is not None else ""
        return f"p50 {ms(self.p50)}, {self.how} {ms(self.p99)}; {size(self.bytes)}{items}"


def measure_get(url: str, headers: dict[str, str], seconds: float, budget: float) -> Get:
    """wrk when one request takes under 250 ms; else a few sequential requests (at most `budget` seconds)."""
    with httpx.Client(timeout=600) as c:
        t0 = time.monotonic()
        r = c.get(url, headers=headers)
        first = time.monotonic() - t0
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:120]}")
        body = r.content
        items = len(r.json()) if r.headers.get("content-type", "").startswith("application/json") and body[:1] == b"[" else None
        if first < 0.25:
            try:
                w = wrk(url, seconds, conns=8, headers=headers)
            except RuntimeError:
                w = None  # no request completed under load: measured one after the other below
            if w is not None and (w.non2xx or w.timeouts):
                raise RuntimeError(f"{w.non2xx} non-2xx and {w.timeouts} timeouts under wrk")
            if w is not None:
                return Get(w.p50 / 1000, w.p99 / 1000, len(body), "p99", items)
        times = [first]
        while len(times) < 5 and sum(times) + statistics.median(times) < budget:
            t0 = time.monotonic()
            c.get(url, headers=headers).raise_for_status()
            times.append(time.monotonic() - t0)
    return Get(statistics.median(times), max(times), len(body), f"max of {len(times)}", items)


def proc_tree(pid: int) -> list[int]:
    """`pid`'s descendants (granian's worker processes)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def worker_rss(pid: int) -> tuple[float, float, int]:
    """(largest VmRSS, largest VmHWM) in MiB over the server's worker processes, and how many there are."""
    rss, hwm, n = 0.0, 0.0, 0
    for p in proc_tree(pid) or [pid]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        r = re.search(r"VmRSS:\s+(\d+) kB", status)
        h = re.search(r"VmHWM:\s+(\d+) kB", status)
        if r and h:
            rss, hwm, n = max(rss, int(r.group(1)) / 1024), max(hwm, int(h.group(1)) / 1024), n + 1
    return rss, hwm, n


# -- one side --------------------------------------------------------------------------------------------------------
@dataclass
class Side:
    label: str
    src: Path
    db_name: str
    tmp: Path
    devices: int
    seconds: float
    budget: float
    results: dict[str, str] = field(default_factory=dict)
    server: subprocess.Popen[bytes] | None = None
    port: int = 0
    token: str = ""
    tid: int = 0
    release_id: int = 0
    run_no: int = 0

    @property
    def db_url(self) -> str:
        return PG.rsplit("/", 1)[0] + "/" + self.db_name

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.src), "BULKHEAD_DATABASE_URL": self.db_url, "BULKHEAD_ADMIN_TOKEN": ""}

    def start(self, workers: int = 2) -> None:
        self.stop()
        self.port = free_port()
        self.server = start_bulkhead(self.tmp / "data", self.port, workers=workers, env_extra=self.env())
        for _ in range(120):  # start_bulkhead waits 20 s at most; a server may take longer with a big fleet
            if self.server.poll() is not None:
                raise RuntimeError(f"the server exited with {self.server.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=10).status_code == 200:
                    return
            time.sleep(1)
        raise RuntimeError("the server did not answer /healthz within 2 minutes")

    def stop(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(60)
            except subprocess.TimeoutExpired:
                for p in proc_tree(self.server.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
                self.server.kill()
                self.server.wait(10)
            self.server = None

    def task(self, *args: str, timeout: float = 3600) -> Any:
        """Run `scale.py --side-task ...` with this side's code; its last output line is JSON."""
        env = {**os.environ, **self.env()}
        r = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--side-task", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if r.returncode != 0:
            last = r.stderr.strip().splitlines()[-1:] or [f"exit code {r.returncode}"]
            raise RuntimeError(f"side task {args[0]} failed: {last[0]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def record(self, key: str, fn: Callable[[], str]) -> None:
        """One measurement: its result or n/a (why); the run goes on either way."""
        t0 = time.monotonic()
        try:
            self.results[key] = fn()
        except Exception as exc:  # any failure is this measurement's n/a
            self.results[key] = na(exc)
            traceback.print_exc()
        print(f"[{self.label}] {key}: {self.results[key]}  ({time.monotonic() - t0:.1f} s)", flush=True)


def sample_ids(devices: int, n: int = 10_000) -> list[int]:
    n = min(n, devices)
    step = devices / n
    return sorted({int(i * step) for i in range(n)})


def tokens_lua(ids: list[int]) -> str:
    return lua_list([f"{DEVICE_PREFIX}bench{i}" for i in ids])


def reports(side: Side, events: int, with_inventory: bool, verify: bool = True, warm_up: bool = False) -> str:
    """wrk against the reports endpoint; then every answered report's events must be in the database exactly once.

    `warm_up`: one pass first (not verified), so that the measured pass finds the devices as a fleet that reports every
    few minutes leaves them: credentials in the workers' caches, rows in PostgreSQL's buffers; both rates are shown.
    """
    first = reports(side, events, with_inventory, verify=False).split(", p50")[0] if warm_up else ""
    ids = sample_ids(side.devices)
    base = side.run_no * 100_000  # each run's seq numbers above the last run's, within the server's window of 10^6
    side.run_no += 1
    inv_a = inv_b = None
    if with_inventory:
        inv_a, inv_b = json.dumps(inventory(400, changing=True), separators=(",", ":")).split("@SEQ@")
    script = REPORT_LUA.format(
        tokens=tokens_lua(ids),
        base=base,
        k=events,
        rel=side.release_id,
        inv_a=lua_str(inv_a),
        inv_b=lua_str(inv_b),
    )
    w = wrk(side.base + "/device/v1/reports", side.seconds, script)
    out = w.line() + (f" (first pass after start: {first})" if first else "")
    if not verify:
        return out
    names = [f"dev-{i:06d}" for i in ids]
    last: tuple[int, ...] = ()
    with psycopg.connect(side.db_url) as conn:
        for _ in range(30):  # a server may write reports in batches a moment later: wait until the count holds
            row = conn.execute(
                """WITH e AS (SELECT ev.device_id, ev.seq FROM device_events ev JOIN devices d ON d.id = ev.device_id
                              WHERE d.tenant_id = %(t)s AND d.name = ANY(%(n)s) AND ev.seq > %(lo)s AND ev.seq <= %(hi)s)
                   SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM e) x),
                          coalesce((SELECT sum(b - a + 1) FROM (SELECT min(seq) a, max(seq) b FROM e GROUP BY device_id) y), 0)
                   FROM e""",
                {"t": side.tid, "n": names, "lo": base, "hi": base + 100_000},
            ).fetchone()
            assert row is not None
            now = tuple(int(x) for x in row)
            if now == last:
                break
            last = now
            time.sleep(1)
    # Lost = a gap between a device's first and last stored event. (Counted from the device's first seq, not from the
    # pass's base: wrk builds the first request of its first thread once without sending it, so device 0's first seq
    # never reaches the server; the stored events still equal the answered reports plus those in flight.)
    stored, distinct, contiguous = last
    lost, doubled = contiguous - distinct, stored - distinct
    answered = w.requests - w.non2xx
    extra = distinct // events - answered  # reports the server took while wrk stopped without reading the answer
    check = f"{lost:,} lost, {doubled:,} doubled: {stored:,} events stored for {answered:,} answered reports"
    if extra:
        check += f" and {extra:,} in flight when wrk stopped" + ("" if 0 <= extra <= CONNS else f" (at most {CONNS} expected)")
    if w.non2xx:
        check += f"; {w.non2xx:,} non-2xx answers"
    side.results[f"intact{events}"] = check
    return out


def premap(side: Side) -> str:
    """One vulnerability scan before anything is measured, as a live fleet has had: the server's periodic device
    scan (every 10 minutes) maps each device not yet mapped, and its first run over a freshly seeded fleet took a
    worker's core for 20 s in the middle of whatever was measured then. A side without the endpoint is left as is."""
    r = httpx.post(side.base + "/api/v1/vulnerabilities/scan", json={}, headers=side.auth, timeout=60)
    if r.status_code == 404:
        return na("no scan endpoint")
    r.raise_for_status()
    took = time.monotonic()
    while time.monotonic() - took < 600:
        run = httpx.get(side.base + f"/api/v1/vulnerabilities/scans/{r.json()['id']}", headers=side.auth, timeout=60).json()
        if run["status"] not in ("queued", "running"):
            mapped = (run.get("counts") or {}).get("devices_mapped", 0)
            return f"{run['status']}: {mapped:,} devices mapped in {secs(time.monotonic() - took)}"
        time.sleep(1)
    raise RuntimeError("the scan did not finish within 10 minutes")


def seconds_of(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def page_walk(side: Side) -> str:
    """Follow X-Next-Cursor (or Link rel=next) through the whole device list; keeps the deep page's URL."""
    # Pages of 1 % of the fleet (100 to 1,000 devices; smaller if the side refuses): one of them starts at 90 %.
    limits = [n for n in (1000, 500, 200, 100) if n <= max(100, side.devices // 100)]
    url: str | None = f"{side.base}/api/v1/devices?limit={limits[0]}"
    pages, items, t0 = 0, 0, time.monotonic()
    deep = None
    with httpx.Client(timeout=600) as c:
        while url is not None:
            if deep is None and pages > 0 and items >= side.devices * 0.9:
                deep = str(httpx.URL(url).copy_set_param("limit", "100"))
            r = c.get(url, headers=side.auth)
            if pages == 0 and r.status_code in (400, 422) and len(limits) > 1:
                limits.pop(0)
                url, t0 = f"{side.base}/api/v1/devices?limit={limits[0]}", time.monotonic()
                continue
            r.raise_for_status()
            pages += 1
            items += len(r.json())
            nxt = r.headers.get("x-next-cursor")
            link = r.links.get("next", {}).get("url")
            if not nxt and not link:
                if pages == 1:
                    raise RuntimeError("no paging")
                break
            url = (
                str(httpx.URL(side.base).join(link))
                if link
                else str(httpx.URL(side.base + "/api/v1/devices", params={"cursor": nxt}))
            )
    if deep is None:
        raise RuntimeError(f"the walk ended after {items} devices, before 90 % of the fleet")
    side.results["deep_url"] = deep
    return f"{pages:,} pages of {limits[0]:,}, {items:,} devices in {secs(time.monotonic() - t0)}"


def measure_side(side: Side, ca: Path, bundle: Path, scaling: bool) -> None:
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {side.db_name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {side.db_name}")
    try:
        side.start()  # migrations
        admin = (side.tmp / "data" / "admin.token").read_text().strip()
        r = httpx.post(side.base + "/api/v1/tenants", json={"name": "bench"}, headers={"authorization": f"Bearer {admin}"})
        r.raise_for_status()
        side.token, side.tid = r.json()["token"], r.json()["id"]
        httpx.put(side.base + "/api/v1/keyring", json={"pem": ca.read_text()}, headers=side.auth).raise_for_status()
        rel = httpx.post(side.base + "/api/v1/releases", content=bundle.read_bytes(), headers=side.auth, timeout=300)
        rel.raise_for_status()
        side.release_id = rel.json()["id"]
        took, seeded = seconds_of(lambda: side.task("seed", str(side.tid), str(side.devices)))
        print(f"[{side.label}] seeded {seeded['devices']:,} devices in {took:.1f} s", flush=True)
        # What autovacuum does after a bulk load, done now rather than at a random moment of a measurement: hint bits
        # and the visibility map set, statistics for the planner (a live fleet's database is never fresh from COPY).
        with psycopg.connect(side.db_url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")
        side.record("premap", lambda: premap(side))
        if scaling:  # first, on the fleet as seeded (no rollout yet, as bench/checkin.py measures polls)
            for workers in (1, 2):
                side.start(workers)
                ids = sample_ids(side.devices, 2000)
                # Warm-up passes fill each worker's poll cache (as in bench/checkin.py) until the rate stops rising
                # (at most 4); then the measured pass.
                before = 0.0
                for _ in range(4):
                    try:
                        rps = wrk(side.base + "/device/v1/state", side.seconds, POLL_LUA.format(tokens=tokens_lua(ids))).rps
                    except RuntimeError:
                        continue
                    print(f"[{side.label}] polls warm-up, {workers} worker(s): {rps:,.0f}/s", flush=True)
                    if rps < before * 1.2:
                        break
                    before = rps
                side.record(
                    f"polls_w{workers}",
                    lambda ids=ids: wrk(
                        side.base + "/device/v1/state", side.seconds, POLL_LUA.format(tokens=tokens_lua(ids))
                    ).line(),  # type: ignore[misc]
                )
                side.record(f"reports_w{workers}", lambda: reports(side, 1, False, verify=False))
                side.stop()
        side.start()  # a fresh server for RSS at start
        time.sleep(2)
        rss, hwm, n = worker_rss(side.server.pid)  # type: ignore[union-attr]
        side.results["rss_start"] = f"{rss:,.0f} MiB ({n} processes)"

        side.record("reports1", lambda: reports(side, 1, False, warm_up=True))
        side.record("reports5", lambda: reports(side, 5, True, warm_up=True))
        phases = [{"name": "canary", "percent": 10}, {"name": "rest", "percent": 90}]

        def create() -> str:
            body = {"name": "bench-1", "release_id": side.release_id, "phases": phases}
            took, r = seconds_of(lambda: httpx.post(side.base + "/api/v1/rollouts", json=body, headers=side.auth, timeout=900))
            if r.status_code != 201:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:120]}")
            side.results["rollout"] = str(r.json()["id"])
            return f"{secs(took)} (answer: {r.json()['devices']:,} devices)"

        side.record("create", create)
        rid = side.results.get("rollout")
        for key, path in (
            ("progress", f"/api/v1/rollouts/{rid}"),
            ("devices_first", "/api/v1/devices?limit=100"),
            ("devices_tag", "/api/v1/devices?tag=site-7&limit=100"),
            ("actions_first", f"/api/v1/rollouts/{rid}/actions?limit=100"),
            ("groups", "/api/v1/groups"),
            ("rollouts", "/api/v1/rollouts"),
        ):
            if key in ("progress", "actions_first") and rid is None:
                side.results[key] = na("no rollout")
                continue
            side.record(key, lambda path=path: measure_get(side.base + path, side.auth, side.seconds, side.budget).line())  # type: ignore[misc]
        side.record("walk", lambda: page_walk(side))
        if "deep_url" in side.results:
            side.record(
                "devices_deep", lambda: measure_get(side.results["deep_url"], side.auth, side.seconds, side.budget).line()
            )
        else:
            side.results["devices_deep"] = na("no paging")
        rss, hwm, n = worker_rss(side.server.pid)  # type: ignore[union-attr]
        side.results["rss_after"] = f"{rss:,.0f} MiB (peak {hwm:,.0f} MiB)"
        time.sleep(IDLE)  # the server's heap trimmer (heap.Trimmer) runs every 30 s
        rss, _, _ = worker_rss(side.server.pid)  # type: ignore[union-attr]
        side.results["rss_idle"] = f"{rss:,.0f} MiB"

        def create_later() -> str:
            start = time.time() + 86400  # tomorrow: the evaluation below (server stopped) moves the start to now
            body = {
                "name": "bench-2",
                "release_id": side.release_id,
                "phases": phases,
                "start_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start)),
            }
            took, r = seconds_of(lambda: httpx.post(side.base + "/api/v1/rollouts", json=body, headers=side.auth, timeout=900))
            if r.status_code != 201:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:120]}")
            side.results["rollout2"] = str(r.json()["id"])
            return secs(took)

        side.record("create_later", create_later)
        side.stop()
        if rid is not None:
            try:
                steps = side.task("evaluate", rid, side.results.get("rollout2", ""))
                for k, v in steps.items():
                    side.results[f"eval_{k}"] = v
                    print(f"[{side.label}] eval {k}: {v}", flush=True)
            except Exception as exc:
                side.results["eval_error"] = na(exc)
                print(f"[{side.label}] evaluation: {exc}", flush=True)
    finally:
        side.stop()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {side.db_name} WITH (FORCE)")


# -- what runs inside a side's own code (subprocess with PYTHONPATH=<side>/src) ---------------------------------
def task_seed(tenant_id: int, count: int) -> dict[str, Any]:
    from sqlalchemy import create_engine, insert

    from bulkhead.server.models import Device

    try:
        from bulkhead.server.security import hash_token
    except ImportError:
        import hashlib

        def hash_token(token: str) -> str:
            return hashlib.sha256(token.encode()).hexdigest()

    columns = set(Device.__table__.columns.keys())
    reported = inventory(20, changing=False)
    engine = create_engine(os.environ["BULKHEAD_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for lo in range(0, count, 5000):
            rows = []
            for i in range(lo, min(lo + 5000, count)):
                row = {
                    "tenant_id": tenant_id,
                    "name": f"dev-{i:06d}",
                    "compatible": "bench",
                    "status": "active",
                    "credential_hash": hash_token(f"{DEVICE_PREFIX}bench{i}"),
                    "tags": [f"site-{i % SITES}", f"model-{i % 4}"],
                    "groups": [f"g{i % GROUPS}"],
                    "attributes": {"serial": str(i)},
                    "reported": reported,
                    "os_version": "1",
                    "desired": {},
                    "update_status": {},
                    "attributes_wanted": False,
                }
                rows.append({k: v for k, v in row.items() if k in columns})
            ids = conn.execute(insert(Device).returning(Device.id), rows).scalars().all()
            if "reported" not in columns:  # migration 0032: inventories have a table of their own
                from bulkhead.server.models import DeviceInventory

                conn.execute(insert(DeviceInventory), [{"device_id": i, "reported": reported} for i in ids])
    engine.dispose()
    return {"devices": count}


def task_evaluate(rollout: int, later: int | None) -> dict[str, str]:
    """Time RolloutService.advance steps of this side's code on its database (the server is stopped)."""
    from sqlalchemy import func, select

    from bulkhead.server.db import Database
    from bulkhead.server.models import Action, Device, Rollout
    from bulkhead.server.services import rollouts as svc

    db = Database(os.environ["BULKHEAD_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    service = svc.RolloutService(db)
    out: dict[str, str] = {}

    def state(rid: int) -> tuple[str, int, int]:
        """Status, current phase and action rows (informative: a side may write its actions at creation)."""
        with db.session() as s:
            r = s.get(Rollout, rid)
            assert r is not None
            n = s.scalar(select(func.count()).select_from(Action).where(Action.rollout_id == rid)) or 0
            return r.status, r.current_phase, n

    def step(key: str, rid: int | None, expect: Callable[[tuple[str, int, int]], bool] | None = None) -> None:
        """One advance(); `expect` says what it must have done (or not done: None means 'nothing changes')."""
        before = state(rid) if rid is not None else None
        t0 = time.monotonic()
        service.advance(rid)
        took = time.monotonic() - t0
        if rid is None:
            out[key] = secs(took)
            return
        st = state(rid)
        text = f"{secs(took)} ({st[2]:,} actions, {st[0]}, phase {st[1] + 1})"
        ok = expect(st) if expect is not None else st == before
        out[key] = text if ok else na(f"unexpected result: {text}, before: {before}")

    def succeed(rid: int, phase: int | None) -> str:
        """Close actions as success the way a device's report does: the side's own record_status, in one transaction."""
        t0 = time.monotonic()
        with db.session() as s:
            q = select(Action).where(Action.rollout_id == rid, Action.active.is_(True))
            if phase is not None:
                q = q.where(Action.phase == phase)
            actions = list(s.scalars(q))
            ids = [a.device_id for a in actions]
            # The devices held in the session (its identity map is weak): adopting the release then needs no query
            # (and no autoflush) per action.
            devices = [
                d
                for lo in range(0, len(ids), 10_000)
                for d in s.scalars(select(Device).where(Device.id.in_(ids[lo : lo + 10_000])))
            ]
            for a in actions:
                svc.record_status(a, "success", "bench: installed", source="device")
            del devices
        return f"{len(actions):,} actions in {secs(time.monotonic() - t0)}"

    if later:
        with db.session() as s:  # its start is now, as if the operator had scheduled it for this moment
            r2 = s.get(Rollout, later)
            if r2 is not None:
                r2.start_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        if state(later)[0] != "scheduled":
            out["first"] = na(f"the later rollout was {state(later)[0]} before its start")
        else:
            step("first", later, lambda st: st[0] == "running")
    step("idle_canary", rollout)
    out["succeed_canary"] = succeed(rollout, 0)
    step("big_phase", rollout, lambda st: st[1] == 1)
    step("idle_all", rollout)
    out["succeed_all"] = succeed(rollout, None)
    step("finish", rollout, lambda st: st[0] == "finished")
    step("finished", rollout)
    step("sweep", None)
    db.dispose()
    return out


def side_task(argv: list[str]) -> None:
    what, *rest = argv
    if what == "seed":
        out: Any = task_seed(int(rest[0]), int(rest[1]))
    elif what == "evaluate":
        out = task_evaluate(int(rest[0]), int(rest[1]) if len(rest) > 1 and rest[1] else None)
    else:
        raise SystemExit(f"unknown side task {what}")
    print(json.dumps(out))


# -- the run -------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def reference_tree(rev: str, tmp: Path) -> Iterator[Path]:
    """The reference's src/ as of `rev` (git archive), in a temporary directory."""
    out = tmp / "reference"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    yield out / "src"


ROWS: list[tuple[str, str, str]] = [
    # (label, result key, goal key)
    ("(before measuring) the seeded fleet's first vulnerability scan", "premap", ""),
    ("reports/s, 1 event (wrk, 64 connections)", "reports1", "reports1"),
    ("  stored exactly once", "intact1", "intact"),
    ("reports/s, 5 events + 400-package inventory", "reports5", "reports5"),
    ("  stored exactly once", "intact5", "intact"),
    ("`POST /api/v1/rollouts` to all devices (starts the 10 % canary)", "create", "create"),
    ("`POST /api/v1/rollouts` starting tomorrow (phase 1 not opened)", "create_later", "create"),
    ("evaluation step that starts the first phase (10 %)", "eval_first", "step"),
    ("evaluation step with nothing to do (canary running)", "eval_idle_canary", "step"),
    ("  (canary's actions set to success, as devices report)", "eval_succeed_canary", ""),
    ("evaluation step that starts the 90 % phase", "eval_big_phase", "step"),
    ("evaluation step with nothing to do, all devices have actions", "eval_idle_all", "step"),
    ("  (all actions set to success)", "eval_succeed_all", ""),
    ("evaluation step that finishes the rollout", "eval_finish", "step"),
    ("evaluation step on the finished rollout", "eval_finished", "finished"),
    ("periodic sweep, `advance(None)` (one finished, one running rollout)", "eval_sweep", "step"),
    ("rollout progress `GET /api/v1/rollouts/{id}`", "progress", "progress"),
    ("`GET /api/v1/devices` first page (reference: the whole list)", "devices_first", "list"),
    ("`GET /api/v1/devices` deep page (90 % in, by cursor)", "devices_deep", "list"),
    ("  walking every page", "walk", ""),
    ("`GET /api/v1/devices?tag=` (1 % of devices)", "devices_tag", "list"),
    ("`GET /api/v1/rollouts/{id}/actions` first page", "actions_first", "list"),
    ("`GET /api/v1/groups` (10 groups with their device counts)", "groups", "list"),
    ("`GET /api/v1/rollouts` (with each rollout's progress; one of 100,000 devices)", "rollouts", "list"),
    ("worker RSS at start (largest worker)", "rss_start", "rss"),
    ("worker RSS after all of the above (largest; peak)", "rss_after", "rss"),
    ("worker RSS 40 s later, idle (largest)", "rss_idle", "rss"),
    ("polls/s `GET /device/v1/state` (after warm-up passes), 1 server worker", "polls_w1", ""),
    ("polls/s, 2 server workers", "polls_w2", ""),
    ("reports/s (1 event), 1 server worker", "reports_w1", ""),
    ("reports/s (1 event), 2 server workers", "reports_w2", ""),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--reference", default="05bdbed", help="git revision of the reference (main before the scale work)")
    ap.add_argument("--seconds", type=float, default=10, help="length of each wrk run")
    ap.add_argument("--quick", action="store_true", help="2,000 devices and 3 s runs: checks the harness")
    ap.add_argument("--no-reference", action="store_true", help="measure the working tree only")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the checkout measured as 'now' (default: this script's)")
    ap.add_argument("--scaling-reference", action="store_true", help="also measure 1 and 2 workers on the reference")
    ap.add_argument("--side-task", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side_task:
        side_task(args.side_task)
        return
    if args.quick:
        args.devices, args.seconds = 2000, 3
    budget = 10 if args.quick else 45  # seconds of sequential requests per slow read
    sys.path.insert(0, str(ROOT / "src"))  # the bundle is made with the working tree's RAUC code (the format is shared)
    bundle, ca = random_bundle("scale", 1)
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.reference], capture_output=True, text=True, check=True
    )
    ref_rev = rev.stdout.strip()
    tree = args.tree.resolve()
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "src"], capture_output=True, text=True, check=True)
    now_rev = head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    started = time.monotonic()
    suffix = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmpd:
        tmp = Path(tmpd)
        sides: list[Side] = []
        with reference_tree(args.reference, tmp) as ref_src:
            for label, src in (("ref", ref_src), ("new", tree / "src")):
                if label == "ref" and args.no_reference:
                    continue
                (tmp / label).mkdir()
                side = Side(label, src, f"bench_scale_{label}_{suffix}", tmp / label, args.devices, args.seconds, budget)
                sides.append(side)
                t0 = time.monotonic()
                try:
                    measure_side(side, ca, bundle, scaling=label == "new" or args.scaling_reference)
                except Exception as exc:  # the other side still runs; its table cells say why
                    traceback.print_exc()
                    side.results.setdefault("error", na(exc))
                side.results["took"] = f"{(time.monotonic() - t0) / 60:.1f} min"
                print(f"[{label}] done in {time.monotonic() - t0:.0f} s", flush=True)
    by = {s.label: s.results for s in sides}

    def cell(label: str, key: str) -> str:
        if label not in by:
            return "not run"
        res = by[label]
        if key in res:
            return res[key]
        if key.startswith("eval_") and "eval_error" in res:
            return res["eval_error"]
        if key.endswith(("_w1", "_w2")) and label == "ref" and not args.scaling_reference:
            return "not measured"
        return res.get("error", "n/a (not measured)")

    table = [["what", f"reference ({ref_rev})", f"now ({now_rev})", "goal"]]
    table += [[what, cell("ref", key), cell("new", key), GOALS.get(goal, "")] for what, key, goal in ROWS]
    dev_note = (
        f"**Development run at {args.devices:,} devices: the goals are for 100,000 (the coordinator's final run).** "
        if args.devices < 100_000
        else ""
    )
    write_result(
        "scale",
        f"Fleet scale at {args.devices:,} devices: reports, rollouts, lists, RSS (reference vs now)",
        table,
        dev_note + f"Both sides in one run, one after the other, each its own server (`bulkhead server --workers 2`, granian, "
        f"unless the row says otherwise) and its own PostgreSQL database on the same machine; `{args.devices:,}` devices "
        f"seeded by each side's models (10 groups, 100 site tags, a small inventory each). wrk: 2 threads, {CONNS} "
        f"connections, {args.seconds:g} s per run; reports rotate over {len(sample_ids(args.devices)):,} devices. Reads: "
        "wrk (8 connections) when a request takes under 250 ms, else sequential requests (`max of n` stands in for p99). "
        "Evaluation steps: one `RolloutService.advance(id)` of the side's code, with its server stopped. "
        f"Whole run: {(time.monotonic() - started) / 60:.0f} min ("
        + ", ".join(f"{'reference' if s.label == 'ref' else 'now'} {s.results.get('took', '?')}" for s in sides)
        + "). "
        f"Run: `.venv/bin/python bench/scale.py --devices {args.devices}`.",
    )


if __name__ == "__main__":
    main()
