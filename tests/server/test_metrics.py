"""Prometheus metrics and readiness: the fleet as the database has it, request counts of every worker process,
a tenant sees only its fleet, readiness names the dependency that fails."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bulkhead.server.db import Database, migrate
from bulkhead.server.readiness import check
from tests.live import LiveServer, live_server

ROUNDS = 20


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _enroll(c: httpx.Client, names: list[str]) -> None:
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
    for name in names:
        r = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": name, "compatible": "Test Config"})
        assert r.status_code in (200, 201), r.text


def test_metrics_show_a_tenant_its_own_fleet_and_the_administrator_every_tenant(server: LiveServer) -> None:
    mine, other = server.tenant(), server.tenant()
    with server.client(mine) as c, server.client(other) as o:
        _enroll(c, ["m-1", "m-2", "m-3"])
        _enroll(o, ["o-1"])
        c.post("/api/v1/devices/m-3/disable").raise_for_status()
        r = c.get("/metrics")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        seen = _samples(r.text)
        tenants = {dict(labels).get("tenant") for (name, labels) in seen if name == "bulkhead_devices"}
        assert len(tenants) == 1, f"a tenant's token sees one tenant, saw {tenants}"
        (tenant,) = tenants
        assert tenant is not None
        assert _value(seen, "bulkhead_devices", tenant=tenant, status="active") == 2
        assert _value(seen, "bulkhead_devices", tenant=tenant, status="disabled") == 1
        assert _value(seen, "bulkhead_devices_seen", tenant=tenant, within="24h") >= 0
        assert not any(name == "bulkhead_jobs" for name, _ in seen), "the queue is the administrator's"
        assert _value(seen, "bulkhead_http_requests_total", app="api", code="2xx") > 0
    with server.client(server.admin) as a:
        everyone = _samples(a.get("/metrics").text)
        devices = {dict(labels)["tenant"] for (name, labels) in everyone if name == "bulkhead_devices"}
        assert tenant in devices and len(devices) >= 2
        assert any(name == "bulkhead_jobs" for name, _ in everyone)


def test_metrics_need_a_user_token(server: LiveServer) -> None:
    with server.client() as anonymous:
        r = anonymous.get("/metrics")
        assert r.status_code == 401 and r.json()["error"], r.text
    with server.client(server.tenant()) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
        cred = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": "d", "compatible": "Test Config"})
        device = cred.json()["credential"]
    with server.client(device) as d:
        assert d.get("/metrics").status_code == 403


def test_readyz_answers_ready_when_database_queue_and_store_answer(server: LiveServer) -> None:
    with server.client() as c:
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready", "checks": {"database": "ok", "queue": "ok", "store": "ok"}}


def test_readiness_names_each_dependency_that_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    good = Database(url)
    assert check(good, tmp_path, lambda: (0, 0)) == {"database": "ok", "queue": "ok", "store": "ok"}
    gone = Database("postgresql+psycopg://nobody:x@127.0.0.1:1/none")

    def queue() -> tuple[int, int]:
        raise ConnectionError("redis is down")

    checks = check(gone, tmp_path / "missing", queue)
    assert checks["database"].startswith("does not answer")
    assert checks["queue"] == "does not answer (ConnectionError)"
    assert checks["store"] == "not writable"
    good.dispose()
    gone.dispose()


@pytest.mark.parametrize("http_server", ["granian", "uvicorn"])
def test_request_counts_of_every_worker_are_summed(tmp_path: Path, http_server: str) -> None:
    with live_server(tmp_path / "srv", workers=2, http_server=http_server) as srv:
        for _ in range(ROUNDS):
            with httpx.Client(base_url=srv.url) as c:  # a new connection each time: both workers answer some
                assert c.get("/healthz").status_code == 200
        totals = []
        for _ in range(ROUNDS):
            with httpx.Client(base_url=srv.url, headers={"authorization": f"Bearer {srv.admin}"}) as c:
                r = c.get("/metrics")
                assert r.status_code == 200, r.text
                totals.append(_value(_samples(r.text), "bulkhead_http_requests_total", app="api", code="2xx"))
        # Each scrape counts the requests of both workers: at least the ROUNDS health checks whoever answers.
        assert min(totals) >= ROUNDS, totals
        assert totals == sorted(totals), "counts only grow"
