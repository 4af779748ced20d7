"""Web UI page times (issue 22): overview, device list (page 1, page 500, filters), a device's page, and a rollout's page
and progress plot at N devices (default 100,000) and 10 events each (1,000,000) in PostgreSQL.

A fresh PostgreSQL database is migrated by `bulkhead server --workers 2` (granian), then seeded with set-based SQL
(`INSERT ... SELECT ... FROM generate_series`, as fast as the database writes; the rows' column types are read from
the database, so the seed follows the migrations): devices spread over 10 groups, 100 site tags, two OS versions and
last-seen times over the past two hours, each with a small reported inventory; then the events. VACUUM (ANALYZE)
follows, as autovacuum does after a bulk load. A rollout to every device is created through the API, and half its
actions are closed over the last hour by SQL (as if those devices had reported). A user signs in through /ui/login,
and each page is requested one after the other (`--requests` times after 3 warm-ups) over loopback: the time from
request to the last byte, p50 and p95, stands in for the server time (loopback adds well under a millisecond). "First
load" is the page's HTML plus every script and stylesheet it links, as bytes on the wire (a browser with an empty
cache).

Goals: p95 <= 150 ms per page; first load <= 300 KB. Writes bench/results/ui.md.
Needs PostgreSQL (BULKHEAD_BENCH_PG_URL, default the test database's server). Run:
    .venv/bin/python bench/ui.py [--devices 100000] [--events-per-device 10] [--requests 50]
    .venv/bin/python bench/ui.py --devices 2000 --requests 10      # checks the harness
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import free_port, new_tenant, start_bulkhead, write_result  # noqa: E402

PG = "postgresql://bulkhead:bulkhead@127.0.0.1:5432/bulkhead_test"
PASSWORD = "bench ui password 1"
P95_GOAL, BYTES_GOAL = 0.150, 300_000
INVENTORY = (
    '{"agent_version": "0.1.0", "os_version": "1", "rauc": {"compatible": "bench", "booted": "A", "slots": '
    '{"rootfs.0": {"bootname": "A", "state": "booted", "boot_status": "good", "version": "1"}, '
    '"rootfs.1": {"bootname": "B", "state": "inactive", "boot_status": "good", "version": "1"}}}, '
    '"containers": [{"name": "web", "app": "web", "image": "web:3", "state": "running"}], '
    '"packages": {"format": "dpkg", "count": 3, "packages": {"bash": "5.2", "openssl": "3.0.15", "busybox": "1.36"}}}'
)
# Each seeded column's value as SQL over `i` (0..N-1, generate_series); cast to the column's own type below.
DEVICE_COLUMNS = {
    "tenant_id": ":tid",
    "name": "'dev-' || lpad(i::text, 7, '0')",
    "compatible": "'bench'",
    "status": "CASE WHEN mod(i, 97) = 0 THEN 'disabled' ELSE 'active' END",
    "credential_hash": "md5('bench-a' || i) || md5('bench-b' || i)",
    "tags": "json_build_array('site-' || mod(i, 100), 'model-' || mod(i, 4))::text",
    "groups": "json_build_array('g' || mod(i, 10))::text",
    "attributes": "json_build_object('serial', i::text)::text",
    "reported": ":inventory",
    "os_version": "CASE WHEN mod(i, 3) = 0 THEN '1' ELSE '2' END",
    "bytes_served": "0",
    "desired": "'{}'",
    "update_status": "'{}'",
    "report_seq": ":per",
    "attributes_wanted": "false",
    "last_seen": "now() - mod(i, 7200) * interval '1 second'",
    "created_at": "now() - interval '30 days'",
    "credential_epoch": "0",
    "reenroll_allowed": "false",
}
EVENT_COLUMNS = {
    "tenant_id": ":tid",
    "device_id": "d.id",
    "seq": "k",
    "kind": "'update'",
    "phase": "(ARRAY['downloading', 'installing', 'success'])[1 + mod(k, 3)]",
    "details": '\'{"version": "2", "progress": \' || mod(k * 10, 100) || \'}\'',
    "device_time": "now() - (k * interval '1 hour')",
    "at": "now() - (k * interval '1 hour')",
}


def column_sql(conn: psycopg.Connection[Any], table: str, values: dict[str, str]) -> tuple[str, str]:
    """The column list and the select list, each value cast to its column's type; refused when the table has a
    required column this bench does not fill (a new migration: add it to the dict above)."""
    rows = conn.execute(
        "SELECT column_name, udt_name, is_nullable, column_default FROM information_schema.columns WHERE table_name = %s",
        (table,),
    ).fetchall()
    names, exprs = [], []
    for name, udt, nullable, default in rows:
        if name in values:
            names.append(name)
            exprs.append(f"CAST(({values[name]}) AS {udt})")
        elif nullable == "NO" and default is None:
            raise SystemExit(f"{table}.{name} is required and not seeded: add it to bench/ui.py")
    return ", ".join(names), ", ".join(exprs)


RELEASE_COLUMNS = {
    "tenant_id": ":tid",
    "compatible": "'bench'",
    "version": "'3'",
    "format": "'plain'",
    "sha256": "repeat('0', 64)",
    "size": "1",
    "info": "'{}'",
    "created_at": "now()",
}


def seed_rollout(c: httpx.Client, db_url: str, tid: int) -> int:
    """A release row and a two-phase rollout to every device (through the API); then half the devices closed over
    the last hour (one in ten of those failed), as if they had reported: the rollout page's plot counts them."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        cols, exprs = column_sql(conn, "releases", RELEASE_COLUMNS)
        row = conn.execute(f"INSERT INTO releases ({cols}) SELECT {exprs} RETURNING id".replace(":tid", str(int(tid)))).fetchone()
        assert row is not None
        body = {"name": "bench", "release_id": row[0], "target": {}, "phases": [{"percent": 10}, {"percent": 90}]}
        r = c.post("/api/v1/rollouts", json=body)
        r.raise_for_status()
        rid: int = r.json()["id"]
        conn.execute("UPDATE rollouts SET created_at = now() - interval '2 hours' WHERE id = %s", (rid,))
        conn.execute(
            "UPDATE actions SET status = CASE WHEN mod(device_id, 20) = 0 THEN 'failure' ELSE 'success' END, "
            "active = false, closed_at = now() - mod(device_id, 3600) * interval '1 second' "
            "WHERE rollout_id = %s AND mod(device_id, 2) = 0",
            (rid,),
        )
        conn.execute("VACUUM (ANALYZE) actions")
    return rid


def seed(db_url: str, tid: int, devices: int, per: int) -> dict[str, float]:
    took: dict[str, float] = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        cols, exprs = column_sql(conn, "devices", DEVICE_COLUMNS)
        sql = f"INSERT INTO devices ({cols}) SELECT {exprs} FROM generate_series(0, %(n)s - 1) AS i"
        sql = sql.replace(":tid", "%(tid)s").replace(":inventory", "%(inv)s").replace(":per", "%(per)s")
        t0 = time.monotonic()
        conn.execute(sql, {"tid": tid, "n": devices, "inv": INVENTORY, "per": per})
        if conn.execute("SELECT to_regclass('device_inventories')").fetchone() != (None,):  # migration 0032 on
            conn.execute(
                "INSERT INTO device_inventories (device_id, reported) SELECT id, %(inv)s::json FROM devices "
                "WHERE tenant_id = %(tid)s",
                {"tid": tid, "inv": INVENTORY},
            )
        took["devices"] = time.monotonic() - t0
        cols, exprs = column_sql(conn, "device_events", EVENT_COLUMNS)
        sql = (
            f"INSERT INTO device_events ({cols}) SELECT {exprs} FROM devices d CROSS JOIN generate_series(1, %(per)s) AS k "
            "WHERE d.tenant_id = %(tid)s"
        ).replace(":tid", "%(tid)s")
        t0 = time.monotonic()
        conn.execute(sql, {"tid": tid, "per": per})
        took["events"] = time.monotonic() - t0
        t0 = time.monotonic()
        conn.execute("VACUUM (ANALYZE)")
        took["vacuum"] = time.monotonic() - t0
    return took


def first_load(base: str, path: str, cookies: httpx.Cookies) -> int:
    """Bytes on the wire for the page and every script and stylesheet it links, with an empty cache."""
    with httpx.Client(base_url=base, cookies=cookies, timeout=60) as c:
        r = c.get(path)
        r.raise_for_status()
        total = r.num_bytes_downloaded
        for asset in sorted(set(re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', r.text))):
            a = c.get(asset)
            a.raise_for_status()
            total += a.num_bytes_downloaded
    return total


def timed(c: httpx.Client, path: str, n: int) -> list[float]:
    for _ in range(3):
        c.get(path).raise_for_status()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = c.get(path)
        _ = r.content
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    return times


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20, method="inclusive")[18] if len(times) > 1 else times[0]


def deep_page(c: httpx.Client, page: int) -> tuple[str, int]:
    """The device list's page `page` (1-based) by following its Next links, as a user paging would; or the last one."""
    path, n = "/ui/devices", 1
    while n < page:
        m = re.search(r'href="(/ui/devices\?[^"]*cursor=[^"]+)" rel="next"', c.get(path).text)
        if m is None:
            break
        path, n = m.group(1).replace("&amp;", "&"), n + 1
    return path, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--events-per-device", type=int, default=10)
    ap.add_argument("--requests", type=int, default=50, help="timed requests per page")
    ap.add_argument("--pg", default=PG, help="PostgreSQL server URL (its database is replaced by a scratch one)")
    args = ap.parse_args()
    db_name = f"bench_ui_{uuid.uuid4().hex[:6]}"
    db_url = args.pg.rsplit("/", 1)[0] + "/" + db_name
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db_name}")
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmpd:
            data, port = Path(tmpd) / "data", free_port()
            env = {"BULKHEAD_DATABASE_URL": db_url, "BULKHEAD_ADMIN_TOKEN": ""}
            server = start_bulkhead(data, port, workers=2, env_extra=env)
            base = f"http://127.0.0.1:{port}"
            tid, api = new_tenant(base, data)
            httpx.put(base + "/api/v1/users/admin/password", json={"password": PASSWORD}, headers=api).raise_for_status()
            took = seed(db_url, tid, args.devices, args.events_per_device)
            print(f"seeded in {', '.join(f'{k} {v:.1f} s' for k, v in took.items())}", flush=True)
            with httpx.Client(base_url=base, timeout=120) as c:
                form = {"tenant": "bench", "user": "admin", "password": PASSWORD, "next": "/ui/"}
                r = c.post("/ui/login", data=form)
                if r.status_code != 303:
                    raise SystemExit(f"sign-in failed: {r.status_code} {r.text[:200]}")
                walk0 = time.monotonic()
                deep, reached = deep_page(c, 500)
                walk = time.monotonic() - walk0
                with psycopg.connect(db_url) as conn:
                    row = conn.execute("SELECT id FROM devices WHERE name = %s", (f"dev-{args.devices // 2:07d}",)).fetchone()
                assert row is not None
                dev_id = row[0]
                t0 = time.monotonic()
                rid = seed_rollout(httpx.Client(base_url=base, headers=api, timeout=120), db_url, tid)
                took["rollout"] = time.monotonic() - t0
                pages = [
                    ("overview", "/ui/"),
                    ("devices, page 1", "/ui/devices"),
                    (f"devices, page {reached}", deep),
                    ("devices, tag filter (site-7)", "/ui/devices?tag=site-7"),
                    ("devices, name prefix (dev-00123)", "/ui/devices?name=dev-00123"),
                    ("devices, status + version (active, 1)", "/ui/devices?status=active&version=1"),
                    ("device detail (10 events, inventory)", f"/ui/devices/{dev_id}"),
                    ("rollout page (all devices)", f"/ui/rollouts/{rid}"),
                    ("rollout progress over time (plot)", f"/ui/rollouts/{rid}/timeline"),
                ]
                table = [["page", "p50", "p95", "first load", "goal"]]
                for label, path in pages:
                    times = timed(c, path, args.requests)
                    nbytes = first_load(base, path, c.cookies)
                    ok = p95(times) <= P95_GOAL and nbytes <= BYTES_GOAL
                    table.append(
                        [
                            label,
                            f"{statistics.median(times) * 1000:.1f} ms",
                            f"{p95(times) * 1000:.1f} ms",
                            f"{nbytes / 1000:.1f} KB",
                            "met" if ok else "**missed**",
                        ]
                    )
                    print(" | ".join(table[-1]), flush=True)
    finally:
        if server is not None:
            server.terminate()
            with contextlib.suppress(Exception):
                server.wait(30)
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    dev_note = (
        f"**Development run at {args.devices:,} devices: the goals are for 100,000 (the coordinator's final run).** "
        if args.devices < 100_000
        else ""
    )
    write_result(
        "ui",
        f"Web UI pages at {args.devices:,} devices and {args.devices * args.events_per_device:,} events (PostgreSQL)",
        table,
        dev_note + f"`bulkhead server --workers 2` (granian) on PostgreSQL on the same machine; {args.requests} sequential "
        f"requests per page after 3 warm-ups, signed in as the tenant admin; times from request to last byte over loopback. "
        f"Goals: p95 <= {P95_GOAL * 1000:.0f} ms, first load (HTML + linked scripts and stylesheets, bytes on the wire) "
        f"<= {BYTES_GOAL // 1000} KB. Seeded with set-based SQL in {', '.join(f'{k} {v:.0f} s' for k, v in took.items())}; "
        f"reaching page {reached} by its Next links took {walk:.1f} s. "
        f"Run: `.venv/bin/python bench/ui.py --devices {args.devices}`.",
    )


if __name__ == "__main__":
    main()
