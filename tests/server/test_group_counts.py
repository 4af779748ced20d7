"""The group list's device counts are shared (services/groups.py, shared_counts.py): readers share one count until
a device of the tenant changes, here (a membership change, a new device) or in another process (its change feed
mark). On SQLite and PostgreSQL (the `db` fixture)."""

from __future__ import annotations

from sqlalchemy import select

from bulkhead.server.changes import ChangeFeed
from bulkhead.server.db import Database
from bulkhead.server.models import Device
from bulkhead.server.services.groups import GroupService
from bulkhead.server.services.keyset import Page

from .test_rollout_scale import Statements, _fleet, _who


def _counted(sql: list[str]) -> int:
    return sum("GROUP BY CAST(devices.groups AS" in q for q in sql)


def _devices(svc: GroupService, tid: int) -> dict[str, int]:
    return {g["name"]: g["devices"] for g in svc.list_groups(_who(tid), Page()).items}


def test_group_counts_are_shared_until_a_device_of_the_tenant_changes(db: Database) -> None:
    tid, _ = _fleet(db, 6)  # d0, d1 in canary; d2-d5 in line
    feed = ChangeFeed(db)
    feed.install()
    svc, stmts = GroupService(db, feed=feed), Statements(db)
    first, sql = stmts.during(lambda: _devices(svc, tid))
    assert first == {"canary": 2, "line": 4} and _counted(sql) == 1
    again, sql = stmts.during(lambda: _devices(svc, tid))
    assert again == first and _counted(sql) == 0, "a second read shares the count"

    svc.add_device(_who(tid), "canary", "d2")  # here, through the ORM: the feed marks the device
    moved, sql = stmts.during(lambda: _devices(svc, tid))
    assert moved == {"canary": 3, "line": 4} and _counted(sql) == 1, "a membership change is counted at once"

    with db.session() as s:  # another process's change arrives as a feed mark
        d5 = s.scalar(select(Device).where(Device.tenant_id == tid, Device.name == "d5"))
        assert d5 is not None
        d5_id = d5.id
    with db.session() as s:
        s.execute(Device.__table__.update().where(Device.id == d5_id).values(groups=["line", "canary"]))
    stale, sql = stmts.during(lambda: _devices(svc, tid))
    assert stale == moved and _counted(sql) == 0, "no mark yet: the count is kept"
    feed.mark([(tid, d5_id)])
    seen, sql = stmts.during(lambda: _devices(svc, tid))
    assert seen == {"canary": 4, "line": 4} and _counted(sql) == 1

    other, _ = _fleet(db, 2, name="u")  # another tenant's devices do not drop this tenant's count
    _, sql = stmts.during(lambda: _devices(svc, tid))
    assert _counted(sql) == 0
    assert _devices(svc, other) == {"canary": 2}


def test_without_a_change_feed_every_list_counts(db: Database) -> None:
    tid, _ = _fleet(db, 3)
    svc, stmts = GroupService(db), Statements(db)
    for _ in range(2):
        got, sql = stmts.during(lambda: _devices(svc, tid))
        assert got == {"canary": 2, "line": 1} and _counted(sql) == 1
