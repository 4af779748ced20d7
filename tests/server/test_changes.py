"""The state-change feed: which writes invalidate cached poll answers, locally and in other processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bulkhead.server import changes
from bulkhead.server.changes import ChangeFeed
from bulkhead.server.db import Database, migrate
from bulkhead.server.models import Device, DeviceGroup, Tenant, utcnow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    return Database(url)


def _seed(db: Database) -> tuple[int, int]:
    with db.session() as s:
        t = Tenant(name="t")
        s.add(t)
        s.flush()
        d = Device(tenant_id=t.id, name="d1", compatible="c", status="active", tags=[], groups=["g"], attributes={}, reported={})
        s.add(d)
        s.flush()
        return t.id, d.id


def test_a_committed_device_change_invalidates_at_once_and_a_quiet_one_does_not(db: Database) -> None:
    feed = ChangeFeed(db)
    feed.install()
    tid, did = _seed(db)
    before = time.monotonic()
    with db.session() as s:
        dev = s.get(Device, did)
        assert dev is not None
        dev.last_seen, dev.bytes_served, dev.reported = utcnow(), 10, {"os_version": "1"}
    assert feed.valid(tid, did, before), "last_seen, byte counts and reports do not change a poll answer"
    with db.session() as s:
        dev = s.get(Device, did)
        assert dev is not None
        dev.tags = ["canary"]
    assert not feed.valid(tid, did, before)
    assert feed.valid(tid, did, time.monotonic())


def test_a_group_change_invalidates_the_whole_tenant_and_a_rollback_nothing(db: Database) -> None:
    feed = ChangeFeed(db)
    feed.install()
    tid, did = _seed(db)
    before = time.monotonic()
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(DeviceGroup(tenant_id=tid, name="g", desired={"apps": {"x": "1"}}))
        s.flush()
        raise RuntimeError("abort the transaction")
    assert feed.valid(tid, did, before)
    with db.session() as s:
        s.add(DeviceGroup(tenant_id=tid, name="g", desired={"apps": {"x": "1"}}))
    assert not feed.valid(tid, did, before)
    assert feed.valid(tid + 1, 999, before), "other tenants keep their answers"


def test_another_process_learns_of_the_change_from_the_feed_table(db: Database) -> None:
    writer, reader = ChangeFeed(db), ChangeFeed(db)  # two server processes on one database
    writer.install()
    tid, did = _seed(db)
    reader.apply(reader._read())
    before = time.monotonic()
    with db.session() as s:
        dev = s.get(Device, did)
        assert dev is not None
        dev.groups = ["other"]
    assert reader.valid(tid, did, before), "not seen until the poller reads the table"
    reader.apply(reader._read())
    assert not reader.valid(tid, did, before)
    assert reader._read() == [], "the watermark moved past what was applied"


def test_listeners_hear_the_devices_marked_here_after_commit_and_there_from_the_table(db: Database) -> None:
    writer, reader = ChangeFeed(db), ChangeFeed(db)
    writer.install()
    tid, did = _seed(db)
    reader.apply(reader._read())
    heard_here: list[list[int]] = []
    heard_there: list[list[int]] = []
    writer.listen(heard_here.append)
    reader.listen(heard_there.append)
    with db.session() as s:
        s.get_one(Device, did).status = "disabled"
        s.flush()
        assert heard_here == [], "not before the commit"
    assert heard_here == [[did]] and heard_there == []
    reader.apply(reader._read())
    assert heard_there == [[did]]
    with db.session() as s:  # a tenant-wide change names no device
        s.add(DeviceGroup(tenant_id=tid, name="g2"))
    reader.apply(reader._read())
    assert heard_here == [[did]] and heard_there == [[did]]


def test_a_hole_in_the_ids_is_waited_for_then_skipped(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = ChangeFeed(db)
    now = [100.0]
    monkeypatch.setattr(changes.time, "monotonic", lambda: now[0])
    feed.apply([(1, 1, 5), (3, 1, 6)])  # id 2: a transaction not yet committed (or rolled back)
    assert feed._low == 1
    now[0] += 1
    feed.apply([(3, 1, 6)])
    assert feed._low == 1, "a young hole is waited for: its row may still appear"
    feed.apply([(2, 1, 7), (3, 1, 6)])
    assert feed._low == 3
    assert feed._device[7] == now[0] and feed._device[6] == 100.0, "each change is marked once, when first seen"
    feed.apply([(5, 1, 8)])
    now[0] += 11
    feed.apply([(5, 1, 8)])
    assert feed._low == 5, "a hole older than the gap timeout was a rolled-back insert"


def test_an_unread_feed_trusts_no_cached_answer(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = ChangeFeed(db)
    feed._healthy_until = time.monotonic() - 1  # the poller has not succeeded for a while
    assert not feed.valid(1, 1, time.monotonic())
