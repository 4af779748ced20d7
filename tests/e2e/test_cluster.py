"""Three server hosts behind nginx, one killed mid-rollout: the rollout finishes, nothing is lost or done twice.

Three `bulkhead server` processes (own ports, own data directories) share one PostgreSQL database, one Redis (the
job queue) and one S3 bucket (a real SeaweedFS), as a cluster's hosts do; nginx spreads lab devices' requests over
them with contrib/nginx/bulkhead-cluster.conf (passive failover). The devices are real agents with real RAUC.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from bulkhead.agent.outbox import Outbox
from bulkhead.server.db import migrate
from bulkhead.server.security import PREFIX_SYSTEM, new_token
from tests.e2e.conftest import Fleet, build_release, make_fleet, need_lab
from tests.live import LiveServer, free_port, live_server, stop
from tests.seaweed import seaweedfs
from tests.server.conftest import pg_url
from tests.server.vuln_fixtures import KEV

CONF = Path(__file__).parents[2] / "contrib" / "nginx" / "bulkhead-cluster.conf"
PERIODIC = {"rollouts.sweep", "notify.run", "security.run", "vulns.daily", "vulns.kev", "vulns.devices", "vulns.sync"}


@contextmanager
def redis_server(work: Path) -> Iterator[str]:
    """A Redis of its own (no persistence) on a free port, as a child process."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed: apt install redis-server")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=(work / "redis.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        import redis

        client = redis.Redis(port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"redis did not start: {(work / 'redis.log').read_text()[-2000:]}")
                time.sleep(0.1)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc, 10)


@contextmanager
def nginx_cluster(work: Path, upstreams: list[int], port: int) -> Iterator[str]:
    """Real nginx running contrib/nginx/bulkhead-cluster.conf pointed at the three hosts; its access log names the
    host (upstream) that answered each request."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.skip("nginx is not installed: apt install nginx-light")
    work.mkdir(parents=True, exist_ok=True)
    conf = CONF.read_text()
    for i, up in enumerate(upstreams):
        old = f"server 10.0.0.1{i + 1}:8080 "
        assert old in conf, f"contrib/nginx/bulkhead-cluster.conf no longer has {old!r}: update this test with it"
        conf = conf.replace(old, f"server 127.0.0.1:{up} ")
    old = "listen 80;"
    assert old in conf, f"contrib/nginx/bulkhead-cluster.conf no longer has {old!r}: update this test with it"
    conf = conf.replace(old, f"listen 127.0.0.1:{port};")
    (work / "bulkhead.conf").write_text(conf)
    temp = "\n".join(f"    {k}_temp_path {work / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (work / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {work / 'nginx.pid'};\nerror_log {work / 'error.log'} info;\n"
        f"events {{ worker_connections 512; }}\nhttp {{\n"
        f"    log_format up '$upstream_addr $status $request_method $uri';\n"
        f"    access_log {work / 'access.log'} up;\n{temp}\n    include {work / 'bulkhead.conf'};\n}}\n"
    )
    proc = subprocess.Popen(
        [exe, "-p", str(work), "-c", str(work / "nginx.conf"), "-e", str(work / "error.log")],
        stdout=(work / "nginx.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"nginx did not start: {(work / 'error.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        stop(proc, 10)


def _start_hosts(stack: ExitStack, work: Path, env: dict[str, str], ports: list[int]) -> list[LiveServer]:
    """The three hosts, started at once (on a loaded test machine a start takes its time)."""
    migrate(env["BULKHEAD_DATABASE_URL"])  # once, before the hosts start: each finds it current
    token, _ = new_token(PREFIX_SYSTEM)
    starting = []
    for i, port in enumerate(ports):
        data = work / f"host-{i + 1}"
        data.mkdir(mode=0o700)
        (data / "admin.token").write_text(token + "\n")  # the same administrator token everywhere
        # uvicorn with one worker: the host is one process, and kill -9 takes all of it down
        host = live_server(data, env, port=port, http_server="uvicorn", args=("--log-format", "json"), start_timeout=120)
        starting.append(host)
    with ThreadPoolExecutor(len(starting)) as pool:
        futures = [pool.submit(cm.__enter__) for cm in starting]
        wait(futures)
    for cm, future in zip(starting, futures, strict=True):
        if future.exception() is None:
            stack.push(cm.__exit__)  # every host that came up is stopped, also when another did not
    return [f.result() for f in futures]


def _rollout(fleet: Fleet, name: str) -> dict[str, Any]:
    with fleet.api() as c:
        r = c.get(f"/api/v1/rollouts/{name}")
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc


def _actions(fleet: Fleet, name: str) -> dict[str, dict[str, Any]]:
    with fleet.api() as c:
        r = c.get(f"/api/v1/rollouts/{name}/actions")
        r.raise_for_status()
        return {a["device"]: a for a in r.json()}


def _job_runs(hosts: list[LiveServer]) -> list[dict[str, Any]]:
    """Every job run the hosts logged (the JSON log line jobs.py writes when huey's consumer starts a task)."""
    runs = []
    for h in hosts:
        for line in (h.data_dir / "server.log").read_text(errors="replace").splitlines():
            if line.startswith("{") and '"task_id"' in line:
                entry = json.loads(line)
                if "job" in entry:
                    runs.append({**entry, "server": h.url})
    return runs


def test_three_hosts_one_killed_mid_rollout(tmp_path: Path) -> None:
    need_lab()
    pg = "postgresql+psycopg://" + pg_url().removeprefix("postgresql://")
    ports, nginx_port = [free_port() for _ in range(3)], free_port()
    public = f"http://127.0.0.1:{nginx_port}"
    with ExitStack() as stack:
        jobs_url = stack.enter_context(redis_server(tmp_path / "redis"))
        s3 = stack.enter_context(seaweedfs(tmp_path / "s3"))
        bucket = s3.bucket()
        env = {
            "BULKHEAD_DATABASE_URL": pg,
            "BULKHEAD_JOBS_URL": jobs_url,
            **s3.env(bucket, "artifacts/"),  # the object store every host shares
            "BULKHEAD_SECRET": os.urandom(16).hex(),
            "BULKHEAD_PUBLIC_URL": public,
            "BULKHEAD_POLL_INTERVAL": "5",
        }
        hosts = _start_hosts(stack, tmp_path, env, ports)
        url = stack.enter_context(nginx_cluster(tmp_path / "nginx", ports, nginx_port))
        front = LiveServer(url, hosts[0].admin, hosts[0].data_dir, "postgresql")

        fleet = make_fleet(front, tmp_path)
        stack.callback(fleet.shutdown)
        v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
        stored = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert f"artifacts/{v2['sha256'][:2]}/{v2['sha256']}" in stored, f"the release is not in the shared bucket: {stored}"
        names = {"canary": ["canary-1", "canary-2"], "line": ["line-1", "line-2", "line-3"]}
        for group, members in names.items():
            for name in members:
                fleet.device(name, group=group, initial_version="1.0")
        fleet.wait(lambda: all(fleet.show(d.spec.name)["last_seen"] for d in fleet.devices), 60, "enrollment")
        with fleet.api() as c:
            r = c.post(
                "/api/v1/rollouts",
                json={
                    "name": "v2",
                    "release_id": v2["id"],
                    "target": {"groups": ["canary", "line"]},
                    "phases": [{"group": "canary"}, {"group": "line"}],
                },
            )
            assert r.status_code == 201, r.text

        # Mid-rollout: the canaries are downloading or installing. The second host dies at once (kill -9).
        fleet.wait(
            lambda: any(a["status"] not in ("scheduled",) for a in _actions(fleet, "v2").values()), 60, "the first downloads"
        )
        victim = hosts[1]
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait(10)

        fleet.wait(lambda: _rollout(fleet, "v2")["status"] == "finished", 150, "the rollout to finish without host 2")
        acts = _actions(fleet, "v2")
        assert sorted(acts) == sorted(n for m in names.values() for n in m)
        assert {n: a["status"] for n, a in acts.items()} == dict.fromkeys(acts, "success")
        for d in fleet.devices:
            assert d.booted == "B", f"{d.spec.name} runs slot {d.booted}"

        # Every event each agent numbered is stored exactly once: the outboxes are empty (all acknowledged), and the
        # stored sequence numbers per device are 1..n without a gap or a double.
        outboxes = {d.spec.name: Outbox(d.data_dir / "outbox") for d in fleet.devices}
        fleet.wait(lambda: not any(o.pending() for o in outboxes.values()), 60, "every report acknowledged")
        engine = create_engine(pg)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT d.name, e.seq, e.kind, e.phase FROM device_events e JOIN devices d ON d.id = e.device_id")
            ).all()
            claims = conn.execute(text("SELECT name, slot FROM job_claims")).all()
        engine.dispose()
        for name, box in outboxes.items():
            seqs = sorted(r.seq for r in rows if r.name == name)
            assert seqs == list(range(1, box._recorded_seq() + 1)), f"{name}: stored seqs {seqs}"
            phases = Counter(r.phase for r in rows if r.name == name and r.kind == "update")
            assert phases["success"] == 1, f"{name}: {phases}"

        # The devices were spread over all three hosts, and the survivors took over the killed one's share.
        served = Counter(line.split(" ", 1)[0] for line in (tmp_path / "nginx" / "access.log").read_text().splitlines())
        for port in ports:
            assert any(f"127.0.0.1:{port}" in up for up in served), f"host on port {port} served nothing: {served}"

        # No job ran twice: every queued task started on exactly one host, and each periodic job at most once a minute
        # in the whole cluster (and only for a minute some host claimed).
        runs = _job_runs(hosts)
        assert runs, "the hosts logged no job runs"
        twice = [tid for tid, n in Counter(r["task_id"] for r in runs).items() if n > 1]
        assert not twice, f"tasks run twice: {twice}"
        periodic = Counter((r["job"], r["time"][:16]) for r in runs if r["job"] in PERIODIC)
        assert periodic, "no periodic job ran (the test lasts over a minute)"
        assert max(periodic.values()) == 1, f"periodic jobs run twice in one minute: {periodic}"
        claimed = Counter(name for name, _slot in claims)
        for job, n in Counter(job for job, _minute in periodic).items():
            assert n <= claimed[job], f"{job}: {n} runs for {claimed[job]} claims"
        assert any(r["job"] == "rollouts.advance" for r in runs), "rollout evaluations ran in the queue"
        assert len({r["server"] for r in runs}) >= 2, "one queue: the hosts' consumers share its work"

        # A feed imported on one host is what another host's scans read: it came through the bucket.
        admin = {"authorization": f"Bearer {hosts[0].admin}"}
        r = httpx.post(
            f"{hosts[0].url}/api/v1/vulnerability-feeds/cisa-kev/import", content=KEV.read_bytes(), headers=admin, timeout=60
        )
        assert r.status_code == 200, r.text
        r = httpx.get(f"{hosts[2].url}/api/v1/vulnerability-feeds", headers=admin, timeout=60)
        kev = next(f for f in r.json() if f["name"] == "cisa-kev")
        assert kev["has_data"] and kev["records"] > 1000, kev
        assert (hosts[2].data_dir / "feeds" / "cisa-kev.json").read_bytes() == KEV.read_bytes()
