"""Reports at fleet scale: a batch costs the same few statements whatever it holds, an unchanged inventory is not
written again, a refused report does not hold up the others in its batch; over HTTP, concurrent and retried
reports of one device lose and double nothing."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import psycopg
from sqlalchemy import event, func, select, update

from bulkhead.server.db import Database, migrate
from bulkhead.server.errors import Forbidden, Invalid, Unauthorized
from bulkhead.server.models import Device, DeviceEvent, Tenant
from bulkhead.server.security import hash_token
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.reports import ReportService
from bulkhead.server.services.rollouts import RolloutService
from bulkhead.server.services.vuln_scan import lock_tenant
from tests.server.conftest import LiveServer, pg_url

INVENTORY = {"os_version": "1.0", "packages": [{"name": f"pkg{i}", "version": f"{i}.0"} for i in range(400)]}


def _devices(db: Database, n: int) -> list[Principal]:
    with db.session() as s:
        t = Tenant(name="t")
        s.add(t)
        s.flush()
        devs = [
            Device(tenant_id=t.id, name=f"d{i}", compatible="c", tags=[], groups=[], attributes={}, reported={}, desired={})
            for i in range(n)
        ]
        s.add_all(devs)
        s.flush()
        return [Principal("device", d.name, t.id, "t", "device", d.id, "active", "c") for d in devs]


def _events(first: int, last: int) -> list[dict[str, Any]]:
    return [{"seq": i, "kind": "agent", "details": {"n": i}, "at": "2026-01-01T00:00:00+00:00"} for i in range(first, last + 1)]


class Statements:
    """Every statement sent to the database: SQLAlchemy's, and on PostgreSQL also those the report path sends
    through psycopg itself (a recording cursor on each connection checked out of the pool)."""

    def __init__(self, db: Database) -> None:
        self.seen: list[str] = []
        self.db = db
        if db.engine.dialect.name == "postgresql":
            db.engine.dispose()  # connections made before this know nothing of the recording cursor
            event.listen(db.engine, "checkout", self._checkout)
        else:
            event.listen(db.engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)

    def _checkout(self, dbapi_conn: Any, *_args: Any) -> None:
        seen = self.seen

        class Recording(psycopg.Cursor):  # type: ignore[type-arg]
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                if str(query) != ";":  # the pool's liveness check (pool_pre_ping), not the report path's
                    seen.append(str(query))
                return super().execute(query, *args, **kwargs)

            def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                seen.append(str(query))
                return super().executemany(query, *args, **kwargs)

        dbapi_conn.cursor_factory = Recording

    def take(self) -> list[str]:
        seen, self.seen = self.seen, []
        return seen


def test_statements_per_batch_do_not_grow_with_its_events_or_reports(db: Database) -> None:
    svc = ReportService(db, RolloutService(db))
    devs = _devices(db, 40)
    stmts = Statements(db)
    assert svc.ingest(devs[0], _events(1, 1), None) == {"accepted_seq": 1}
    one = stmts.take()
    assert svc.ingest(devs[0], _events(2, 400), None) == {"accepted_seq": 400}
    assert len(stmts.take()) == len(one)
    outcomes = svc.write([svc.prepare(d, _events(1, 5), None) for d in devs[1:]])
    assert outcomes == [5] * 39
    assert len(stmts.take()) == len(one), "39 devices' reports in one batch: the statements of one report"
    assert len(one) <= 4, one  # (BEGIN,) lock the rows, insert the events, update the devices
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(DeviceEvent)) == 400 + 39 * 5


def test_an_unchanged_inventory_is_not_written_again(db: Database) -> None:
    svc = ReportService(db, RolloutService(db))
    (dev,) = _devices(db, 1)
    stmts = Statements(db)
    writes_inventory = re.compile(r"\breported\s*=")
    svc.ingest(dev, [], INVENTORY)
    assert any(writes_inventory.search(st) for st in stmts.take())
    for seq in (1, 2):
        svc.ingest(dev, _events(seq, seq), dict(INVENTORY))  # the same inventory, resent with every report
        assert not any(writes_inventory.search(st) for st in stmts.take())
    svc.ingest(dev, [], {**INVENTORY, "os_version": "1.1"})
    assert any(writes_inventory.search(st) for st in stmts.take())
    with db.session() as s:
        row = s.get(Device, dev.device_id)
        assert row is not None and row.reported["os_version"] == "1.1" and row.os_version == "1.1"
        assert row.report_seq == 2 and len(row.reported["packages"]) == 400


def test_a_refused_report_changes_nothing_and_does_not_hold_up_its_batch(db: Database) -> None:
    svc = ReportService(db, RolloutService(db))
    a, b, gone = _devices(db, 3)
    with db.session() as s:
        s.execute(update(Device).where(Device.id == gone.device_id).values(credential_hash=None))
        s.delete(s.get(Device, gone.device_id))
    batch = [
        svc.prepare(a, _events(1, 2), INVENTORY),
        svc.prepare(b, _events(5_000_000, 5_000_000), INVENTORY),  # beyond the seq window
        svc.prepare(gone, _events(1, 1), None),
        svc.prepare(a, _events(1, 3), None),  # a retry of the first with one more: only seq 3 is new
        svc.prepare(b, _events(1, 1), None),
    ]
    outcomes = svc.write(batch)
    assert outcomes[0] == 2 and outcomes[3] == 3 and outcomes[4] == 1
    assert isinstance(outcomes[1], Invalid) and "above the last accepted" in outcomes[1].message
    assert isinstance(outcomes[2], Unauthorized)
    with db.session() as s:
        seqs = s.execute(select(DeviceEvent.device_id, DeviceEvent.seq).order_by(DeviceEvent.device_id, DeviceEvent.seq)).all()
        assert [tuple(r) for r in seqs] == [(a.device_id, 1), (a.device_id, 2), (a.device_id, 3), (b.device_id, 1)]
        row_b = s.get(Device, b.device_id)
        assert row_b is not None and row_b.reported == {} and row_b.report_seq == 1  # the refused report's inventory too


def _enroll(c: Any, name: str) -> dict[str, str]:
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": name}).json()
    r = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": name, "compatible": "c"})
    return {"authorization": f"Bearer {r.json()['credential']}"}


def test_concurrent_and_retried_reports_lose_and_double_nothing(server: LiveServer) -> None:
    with server.client(server.tenant(keyring=False)) as c:
        one = _enroll(c, "busy")
        others = [_enroll(c, f"o{i}") for i in range(6)]
        failures: list[str] = []

        def post(headers: dict[str, str], events: list[dict[str, Any]], inventory: Any = None) -> None:
            with server.client() as dc:
                r = dc.post("/device/v1/reports", json={"events": events, "inventory": inventory}, headers=headers)
                if r.status_code != 200 or r.json()["accepted_seq"] < events[-1]["seq"]:
                    failures.append(r.text)

        # One device: every thread retries growing batches that overlap the others'; other devices report beside it.
        jobs = [(one, _events(1, k), INVENTORY if k % 2 else None) for k in range(1, 41)] * 2
        jobs += [(h, _events(1, k), None) for h in others for k in range(1, 9)]
        threads = [threading.Thread(target=lambda js=jobs[i::12]: [post(*j) for j in js]) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert [e["seq"] for e in c.get("/api/v1/devices/busy/events", params={"limit": 1000}).json()] == list(range(40, 0, -1))
        for i in range(6):
            assert [e["seq"] for e in c.get(f"/api/v1/devices/o{i}/events").json()] == list(range(8, 0, -1))
        assert len(c.get("/api/v1/devices/busy").json()["reported"]["packages"]) == 400


def test_report_bodies_of_the_wrong_shape_are_refused_with_json_errors(server: LiveServer) -> None:
    with server.client(server.tenant(keyring=False)) as c:
        dev = _enroll(c, "shapes")
        cases: list[tuple[Any, int, str]] = [
            ([], 422, "body"),
            ({"events": {}}, 422, "body.events"),
            ({"events": [1]}, 422, "body.events.0"),
            ({"events": [{"seq": 1, "kind": "agent"}] * 501}, 422, "at most 500"),
            ({"inventory": [1]}, 422, "body.inventory"),
            ({"inventory": {f"k{i}": 1 for i in range(257)}}, 422, "at most 256"),
            ({"events": [{"seq": 1, "kind": "agent", "details": [1]}]}, 400, "details must be an object"),
        ]
        for body, status, message in cases:
            r = c.post("/device/v1/reports", json=body, headers=dev)
            assert r.status_code == status and message in r.json()["message"], (body, r.text)
            assert r.json()["error"] == "invalid" and r.json()["request_id"]
        raw = [(b"", 422, "Field required"), (b'{"events": [', 400, "not valid JSON"), (b'{"events": NaN}', 400, "NaN")]
        raw.append((b'{"inventory": "' + b"x" * (2 * 1024 * 1024) + b'"}', 413, "BULKHEAD_MAX_JSON_BYTES"))
        for content, status, message in raw:
            r = c.post("/device/v1/reports", content=content, headers={**dev, "content-type": "application/json"})
            assert r.status_code == status and message in r.json()["message"], (content[:40], r.text)
        assert c.get("/api/v1/devices/shapes/events").json() == []
        nobody = {"authorization": "Bearer bhd_nobody"}
        assert c.post("/device/v1/reports", json={"events": []}, headers=nobody).status_code == 401
        # An unknown credential hears 401 before anything about its body (and the 401 counts against its address).
        assert c.post("/device/v1/reports", json={"events": {}}, headers=nobody).status_code == 401
        bad = {**nobody, "content-type": "application/json"}
        assert c.post("/device/v1/reports", content=b'{"events": [', headers=bad).status_code == 401
        r = c.post("/device/v1/reports", json={"events": _events(1, 1)}, headers=dev)
        assert r.status_code == 200 and r.json() == {"accepted_seq": 1} and r.headers["x-request-id"]


def test_devices_are_found_by_their_credentials_in_the_batchs_one_lock_statement(db: Database) -> None:
    svc = ReportService(db, RolloutService(db))
    devs = _devices(db, 5)
    tokens = [f"bhd_token{i}" for i in range(5)]
    with db.session() as s:
        for d, token in zip(devs, tokens, strict=True):
            s.execute(update(Device).where(Device.id == d.device_id).values(credential_hash=hash_token(token)))
        # The third device rotated: its old credential works until it uses the new one; the fourth is disabled.
        s.execute(
            update(Device)
            .where(Device.id == devs[2].device_id)
            .values(credential_hash=hash_token("bhd_rotated"), previous_credential_hash=hash_token(tokens[2]))
        )
        s.execute(update(Device).where(Device.id == devs[3].device_id).values(status="disabled"))
    assert svc.write([svc.prepare(devs[4], _events(1, 1), None)]) == [1]
    stmts = Statements(db)
    assert svc.write([svc.prepare(devs[4], _events(2, 2), None)]) == [2]
    by_id = stmts.take()

    def sent(token: str, first: int) -> Any:
        return svc.prepare_sent(hash_token(token), _events(first, first), None, None)

    got = svc.write([sent(tokens[0], 1), sent("bhd_unknown", 1), sent(tokens[1], 1), sent(tokens[2], 1), sent(tokens[3], 1)])
    assert len(stmts.take()) == len(by_id), "devices new to the process: no lookup of their own"
    assert got[0] == 1 and got[2] == 1 and got[3] == 1, got
    assert isinstance(got[1], Unauthorized) and "unknown device credential" in str(got[1])
    assert isinstance(got[4], Forbidden) and "bulkhead device enable d3" in str(got[4])
    with db.session() as s:
        row = s.get(Device, devs[2].device_id)
        assert row is not None and row.previous_credential_hash is not None, "the old credential still works"
        assert s.scalar(select(func.count()).select_from(DeviceEvent).where(DeviceEvent.device_id == devs[3].device_id)) == 0
    assert svc.write([sent("bhd_rotated", 2)]) == [2]
    with db.session() as s:
        row = s.get(Device, devs[2].device_id)
        assert row is not None and row.previous_credential_hash is None  # using the new one ended the old one
    again = svc.write([sent(tokens[2], 3)])
    assert isinstance(again[0], Unauthorized), again


def test_an_inventory_resent_changed_and_changed_back_is_stored_each_time(server: LiveServer) -> None:
    with server.client(server.tenant(keyring=False)) as c:
        dev = _enroll(c, "inv")
        changed = {**INVENTORY, "os_version": "2.0"}
        for seq, inventory in enumerate([INVENTORY, INVENTORY, changed, changed, INVENTORY], start=1):
            r = c.post("/device/v1/reports", json={"events": _events(seq, seq), "inventory": inventory}, headers=dev)
            assert r.status_code == 200 and r.json() == {"accepted_seq": seq}, r.text
            shown = c.get("/api/v1/devices/inv").json()
            assert shown["reported"] == inventory
        r = c.post("/device/v1/reports", json={"inventory": {**INVENTORY, "os_version": 7}}, headers=dev)
        assert r.status_code == 200 and c.get("/api/v1/devices/inv").json()["reported"]["os_version"] == 7


def _update_events(first: int, last: int, release_id: int) -> list[dict[str, Any]]:
    return [
        {
            "seq": i,
            "kind": "update",
            "phase": "downloading",
            "release_id": release_id,
            "details": {},
            "at": "2026-01-01T00:00:00+00:00",
        }
        for i in range(first, last + 1)
    ]


def test_update_events_of_devices_no_rollout_waits_for_cost_one_statement_per_batch(db: Database) -> None:
    svc = ReportService(db, RolloutService(db))
    devs = _devices(db, 30)
    stmts = Statements(db)
    svc.write([svc.prepare(devs[0], _update_events(1, 1, 7), None)])
    one = stmts.take()
    assert svc.write([svc.prepare(d, _update_events(1, 3, 7), None) for d in devs[1:]]) == [3] * 29
    assert len(stmts.take()) == len(one), "29 devices' update events: the statements of one device's"
    # Compared with one bound id, not a list (SQLAlchemy puts a newline before FROM and WHERE).
    one_by_one = re.compile(r"FROM devices\s.*devices\.id = (%\(|\?|\$)", re.S)
    assert not any(one_by_one.search(st) for st in one), "no device row loaded one by one"


def test_a_batch_mixing_every_kind_of_change_writes_each_device_its_own_values(db: Database) -> None:
    """Seen only, new events, an update status, a new inventory and the same inventory again, in one batch: each row
    gets its own columns and keeps the others (PostgreSQL writes them all in one statement)."""
    svc = ReportService(db, RolloutService(db))
    devs = _devices(db, 5)
    svc.write([svc.prepare(devs[4], [], INVENTORY)])
    with db.session() as s:
        before = {d.id: (d.last_seen, d.reported_sha256) for d in s.scalars(select(Device))}
    other = {**INVENTORY, "os_version": "2.0"}
    batch = [
        svc.prepare(devs[0], [], None),
        svc.prepare(devs[1], _events(1, 2), None),
        svc.prepare(devs[2], _update_events(1, 1, 7), None),
        svc.prepare(devs[3], [], other),
        svc.prepare(devs[4], _events(1, 1), INVENTORY),
    ]
    assert svc.write(batch) == [0, 2, 1, 0, 1]
    with db.session() as s:
        rows = {d.id: d for d in s.scalars(select(Device))}
        got = [rows[p.device_id] for p in devs]  # type: ignore[index]
        assert all(d.last_seen is not None and d.last_seen != before[d.id][0] for d in got), "every device seen now"
        assert [d.report_seq for d in got] == [0, 2, 1, 0, 1]
        assert got[2].update_status["phase"] == "downloading" and got[2].update_status["release_id"] == 7
        assert [d.update_status for d in got if d is not got[2]] == [{}] * 4, "no status where none was reported"
        assert got[3].reported == other and got[3].reported_sha256 is not None
        assert got[4].reported == INVENTORY and got[4].reported_sha256 == before[got[4].id][1]
        assert [d.reported for d in got[:3]] == [{}] * 3 and [d.reported_sha256 for d in got[:3]] == [None] * 3


def test_reports_go_on_while_a_vulnerability_scan_holds_its_tenant_lock() -> None:
    """PostgreSQL: a scan locks its tenant's row (lock_tenant) and writes rows naming the tenant's devices in one long
    transaction (its device profiles: a key-share lock on each device). A report of that tenant must not wait for
    it: with FOR UPDATE on the tenant, the key-share lock of every event insert waited, and the fleet's reports
    stalled for as long as a scan of 100,000 devices ran."""
    url = "postgresql+psycopg://" + pg_url().removeprefix("postgresql://")
    migrate(url)
    db = Database(url)
    try:
        svc = ReportService(db, RolloutService(db))
        (dev,) = _devices(db, 1)
        outcome: list[Any] = []
        with db.session() as scan:
            assert dev.tenant_id is not None
            lock_tenant(scan, dev.tenant_id)
            scan.execute(select(Device.id).where(Device.id == dev.device_id).with_for_update(read=True, key_share=True))
            writer = threading.Thread(target=lambda: outcome.append(svc.ingest(dev, _events(1, 3), INVENTORY)))
            writer.start()
            writer.join(timeout=15)
            waited = writer.is_alive()
        writer.join()
        assert not waited, "the report waited for the scan's transaction"
        assert outcome == [{"accepted_seq": 3}]
    finally:
        db.dispose()


def test_a_reports_update_of_its_device_stays_on_the_page_and_off_the_indexes() -> None:
    """PostgreSQL: the devices table keeps room on its pages (migration 0031), so the first report of each device in
    a freshly filled table is a HOT update (no index touched). With pages filled to 100 %, as a bulk load leaves
    them, these updates moved their rows and inserted into all eleven indexes."""
    base = pg_url()
    url = "postgresql+psycopg://" + base.removeprefix("postgresql://")
    migrate(url)
    db = Database(url)
    try:
        svc = ReportService(db, RolloutService(db))
        # Every 8th device of a fleet reports, as a sample of a fleet does in any minute: one or two per page, so
        # each update needs room its page had when filled (on-page pruning of the previous update's old version
        # does not come into it, and it may wait on transactions elsewhere on a busy server).
        devices = _devices(db, 2000)[::8]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) devices")  # what autovacuum does after a load: a settled table
        for dev in devices:
            assert svc.ingest(dev, _events(1, 1), None) == {"accepted_seq": 1}
    finally:
        db.dispose()  # the backends exit and flush their statistics
    with psycopg.connect(base, autocommit=True) as conn:
        for _ in range(50):
            row = conn.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'devices'").fetchone()
            assert row is not None
            if row[0] >= len(devices):
                break
            time.sleep(0.2)
            conn.execute("SELECT pg_stat_clear_snapshot()")
    updates, hot = row
    assert updates == len(devices), row
    assert hot == updates, f"only {hot} of {updates} device updates were HOT"
