"""Device check-ins per second: our agent's /device/v1/state and the hawkBit DDI root, 10k and 100k devices in
PostgreSQL, side by side with nginx serving a static JSON of the same size. Writes bench/results/checkin.md.

Needs PostgreSQL (`make pg`) and wrk. Run: .venv/bin/python bench/checkin.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import create_engine, insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import free_port, start_bulkhead, write_result
from artifact_serving import start_nginx

from bulkhead.server.models import Device
from bulkhead.server.security import PREFIX_DEVICE, hash_token

PG = os.environ.get("BULKHEAD_BENCH_PG_URL", "postgresql://bulkhead:bulkhead@127.0.0.1:5432/bulkhead_test")
SAMPLE = 2000  # distinct devices the load generator polls as, spread over the whole fleet

LUA = """
local tokens = {{{tokens}}}
local names = {{{names}}}
local i = 0
request = function()
  i = i + 1
  local k = (i % #tokens) + 1
  local path = string.gsub("{path}", "NAME", names[k])
  return wrk.format("GET", path, {{["Authorization"] = "{scheme} " .. tokens[k]}})
end
"""


def wrk(url: str, seconds: int, script: str | None) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms)."""
    cmd = ["wrk", "-t", "2", "-c", "64", "-d", f"{seconds}s", "--latency"]
    path = None
    if script:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(script)
            path = f.name
        cmd += ["-s", path]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if path:
        os.unlink(path)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} failed responses from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m is not None, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return rps, pct("50"), pct("99")


def seed(db_url: str, tenant_id: int, start: int, count: int) -> None:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for lo in range(start, start + count, 10_000):
            rows = [
                {
                    "tenant_id": tenant_id,
                    "name": f"dev-{i:06d}",
                    "compatible": "bench",
                    "status": "active",
                    "credential_hash": hash_token(f"{PREFIX_DEVICE}bench{i}"),
                    "tags": [],
                    "groups": ["fleet"],
                    "attributes": {"serial": str(i)},
                    "desired": {},
                    "update_status": {},
                    "attributes_wanted": False,
                }
                for i in range(lo, min(lo + 10_000, start + count))
            ]
            conn.execute(insert(Device), rows)
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=15, help="seconds of the first pass, while the caches fill")
    args = ap.parse_args()
    name = f"bh_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    db_url = PG.rsplit("/", 1)[0] + "/" + name
    tmp = Path(tempfile.mkdtemp(prefix="bench-checkin-"))
    port = free_port()
    env = {"BULKHEAD_DATABASE_URL": db_url, "BULKHEAD_ADMIN_TOKEN": ""}
    server = start_bulkhead(tmp / "data", port, workers=2, env_extra=env)
    base = f"http://127.0.0.1:{port}"
    rows = [["devices", "endpoint", "polls/s", "p50 ms", "p99 ms", "body bytes"]]
    try:
        admin = (tmp / "data" / "admin.token").read_text().strip()
        tenant = httpx.post(f"{base}/api/v1/tenants", json={"name": "bench"}, headers={"authorization": f"Bearer {admin}"})
        tenant.raise_for_status()
        with psycopg.connect(db_url) as conn:
            tid = conn.execute("SELECT id FROM tenants WHERE name = 'bench'").fetchone()[0]  # type: ignore[index]
        total = 0
        for fleet in (10_000, 100_000):
            t0 = time.monotonic()
            seed(db_url, tid, total, fleet - total)
            total = fleet
            print(f"seeded {fleet} devices in {time.monotonic() - t0:.1f} s", flush=True)
            step = fleet // SAMPLE
            ids = [i * step for i in range(SAMPLE)]
            tokens = ",".join(f'"{PREFIX_DEVICE}bench{i}"' for i in ids)
            names = ",".join(f'"dev-{i:06d}"' for i in ids)
            for label, path, scheme in (
                ("agent /device/v1/state", "/device/v1/state", "Bearer"),
                ("DDI root", "/bench/controller/v1/NAME", "TargetToken"),
            ):
                first = base + path.replace("NAME", f"dev-{ids[0]:06d}")
                sample = httpx.get(first, headers={"authorization": f"{scheme} {PREFIX_DEVICE}bench{ids[0]}"})
                sample.raise_for_status()
                script = LUA.format(tokens=tokens, names=names, path=path, scheme=scheme)
                # First pass: every answer (and credential) not yet in a worker's memory is computed from the
                # database; reported, then the steady state (a real fleet polls every few minutes and answers
                # live until something about the device changes).
                rps, p50, p99 = wrk(base + path.replace("NAME", "x"), args.warmup, script)
                rows.append(
                    [
                        f"{fleet:,}",
                        f"{label} (first {args.warmup} s, caches filling)",
                        f"{rps:,.0f}",
                        f"{p50:.1f}",
                        f"{p99:.1f}",
                        str(len(sample.content)),
                    ]
                )
                print(rows[-1], flush=True)
                # Median of three runs: each run's 64 connections split unevenly over the two workers.
                runs = sorted(wrk(base + path.replace("NAME", "x"), args.seconds, script) for _ in range(3))
                rps, p50, p99 = runs[1]
                rows.append([f"{fleet:,}", label, f"{rps:,.0f}", f"{p50:.1f}", f"{p99:.1f}", str(len(sample.content))])
                print(rows[-1], flush=True)
                (tmp / f"static{len(sample.content)}.json").write_bytes(sample.content)
        nginx_port = free_port()
        nginx = start_nginx(tmp, nginx_port, tmp)
        try:
            for f in sorted(tmp.glob("static*.json")):
                rps, p50, p99 = wrk(f"http://127.0.0.1:{nginx_port}/{f.name}", args.seconds, None)
                rows.append(["-", f"nginx static {f.name}", f"{rps:,.0f}", f"{p50:.1f}", f"{p99:.1f}", str(f.stat().st_size)])
        finally:
            nginx.terminate()
    finally:
        server.terminate()
        server.wait(30)
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    write_result(
        "checkin",
        "Device check-ins: agent state and DDI root vs nginx static JSON",
        rows,
        f"wrk -t2 -c64, median of 3 runs of {args.seconds} s, on the same 2 cores as the server "
        "(bulkhead --workers 2, PostgreSQL local); "
        f"requests rotate over {SAMPLE} distinct device credentials spread over the fleet. Goal: 3,333 polls/s at 100k, "
        "p99 <= 50 ms, 100k within 10% of 10k. No database write on either poll path (last_seen is flushed in aggregate). "
        "Answers come from each worker's memory until the state-change feed reports a change to the device or its tenant; "
        "the 'caches filling' rows are the first pass, where answers are computed from PostgreSQL.",
    )


if __name__ == "__main__":
    main()
