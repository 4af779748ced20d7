"""List pages as JSON text: PostgreSQL's JSON of a device page is the value the rows give in Python, field for field,
and both fit the API's response model."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import TypeAdapter
from sqlalchemy import bindparam, literal, select, text

from bulkhead.server.api.schemas import ActionOut, DeviceRow
from bulkhead.server.db import Database, migrate
from bulkhead.server.models import Action, Device, Rollout, Tenant
from bulkhead.server.services.action_list import action_page, action_page_json
from bulkhead.server.services.device_list import DeviceFilter, device_page, device_page_json
from bulkhead.server.services.json_pages import JsonList, JsonPage, iso_utc, rendered
from bulkhead.server.services.keyset import Page, Paged
from tests.pg import pg_url

ROWS = TypeAdapter(list[DeviceRow])
ACTIONS = TypeAdapter(list[ActionOut])


def _seed(db: Database) -> int:
    """Devices whose fields take the shapes that JSON can get wrong: escapes, non-ASCII, nulls, times."""
    t0 = dt.datetime(2026, 12, 4, 21, 50, 58, 123400, tzinfo=dt.UTC)
    with db.session() as s:
        tenant = Tenant(name="t")
        other = Tenant(name="other")
        s.add_all([tenant, other])
        s.flush()
        for i in range(23):
            s.add(
                Device(
                    tenant_id=tenant.id,
                    name=f"dev-{i:02d}" if i % 5 else f'dév "{i}"\\\t\u2028',
                    compatible="board-a" if i % 2 else "board-b",
                    status="active" if i % 7 else "pending",
                    credential_hash=None,
                    tags=["site-1", "x"] if i % 3 == 0 else ["site-2"],
                    groups=["g1"] if i % 4 else [],
                    attributes={"serial": str(i), "ümlaut": 'ß\n"q"'} if i % 2 else {},
                    reported={"packages": {"big": "1"}},
                    os_version=None if i % 6 == 0 else f"1.{i}",
                    desired_release_id=None,
                    # {} (never reported), a phase, and JSON null (written by older code) must all read as objects
                    update_status={} if i % 3 == 0 else {"phase": "installing", "progress": i, "at": t0.isoformat()},
                    bytes_served=i * 2**40,  # beyond 32 bits
                    # None, a fraction with trailing zeros, no fraction at all (isoformat drops it)
                    last_seen=None if i % 4 == 0 else t0 + dt.timedelta(seconds=i) if i % 4 != 2 else t0.replace(microsecond=0),
                )
            )
        s.add(Device(tenant_id=other.id, name="not-mine", compatible="board-a", status="active", tags=["site-1"], groups=[]))
        s.flush()
        s.execute(text("UPDATE devices SET update_status = 'null' WHERE name = 'dev-01'"))
        return tenant.id


# Filters of the same shape follow each other: the second runs the statement the first built, with its own values.
FILTERS = [
    DeviceFilter(),
    DeviceFilter(tags=("site-1",)),
    DeviceFilter(tags=("site-2",)),
    DeviceFilter(status="pending"),
    DeviceFilter(status="active"),
    DeviceFilter(seen_after=dt.datetime(2026, 12, 4, 21, 51, 5, tzinfo=dt.UTC)),
    DeviceFilter(
        seen_after=dt.datetime(2026, 12, 4, 21, 51, 10, tzinfo=dt.UTC), seen_before=dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    ),
    DeviceFilter(tags=("site-1", "x"), compatible="board-b"),
    DeviceFilter(group="g1", status="active"),
    DeviceFilter(name_prefix="dév"),
    DeviceFilter(tags=("nobody",)),
]


@pytest.mark.parametrize("limit", [1, 4, 100])
def test_a_json_page_is_the_rows_page_as_json_and_fits_the_response_model(db: Database, limit: int) -> None:
    tid = _seed(db)
    for f in FILTERS:
        after: tuple[int, ...] | None = None
        seen = 0
        while True:
            with db.read() as s:
                rows = device_page(s, tid, f, Page(limit, after))
                page = device_page_json(s, tid, f, Page(limit, after))
            assert page.next == rows.next, f
            items = json.loads(page.body)
            assert items == rows.items, f  # the same JSON value, field for field (times as the same text)
            assert list(items[0]) == list(rows.items[0]) if items else True  # fields in the same order
            ROWS.validate_json(page.body)  # what the route declares
            seen += len(items)
            if page.next is None:
                break
            after = page.next
        with db.read() as s:
            assert seen == len(device_page(s, tid, f, Page(1000)).items)
    with db.read() as s:
        whole = json.loads(device_page_json(s, tid, DeviceFilter(), Page(1000)).body)
    assert len(whole) == 23 and "not-mine" not in {d["name"] for d in whole}
    assert {d["update"] == {} for d in whole if d["name"] == "dev-01"} == {True}  # JSON null reads as {}
    assert {d["last_seen"] for d in whole} >= {None, "2026-12-04T21:50:58+00:00", "2026-12-04T21:50:59.123400+00:00"}


def test_times_read_as_isoformat_of_utc_whatever_the_sessions_time_zone() -> None:
    db = Database("postgresql+psycopg://" + pg_url().removeprefix("postgresql://"))
    times = [
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 2, 3, 4, 5, 10, tzinfo=dt.UTC),
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ]
    try:
        with db.engine.connect() as c:
            c.execute(text("SET TIME ZONE 'America/New_York'"))
            for t in times:
                got = c.execute(select(iso_utc(literal(t, Device.last_seen.type)))).scalar_one()
                assert got == t.astimezone(dt.UTC).isoformat()
    finally:
        db.dispose()


def test_a_page_rendered_in_python_is_compact_json_with_its_next_key() -> None:
    page = rendered(Paged([{"a": "é", "b": None}], (7,)))
    assert page == JsonPage('[{"a":"é","b":null}]'.encode(), (7,))


def test_an_action_page_is_the_rows_page_as_json_and_fits_the_response_model(db: Database) -> None:
    tid = _seed(db)
    t0 = dt.datetime(2026, 12, 4, 10, 0, 0, 500, tzinfo=dt.UTC)
    with db.session() as s:
        devices = s.execute(select(Device.id).where(Device.tenant_id == tid).order_by(Device.id)).scalars().all()
        r, other = (
            Rollout(
                tenant_id=tid,
                name=n,
                packages={"p": None},
                target={},
                phases=[],
                action_type="soft",
                status="running",
                created_by="t",
            )
            for n in ("r", "o")
        )
        s.add_all([r, other])
        s.flush()
        for i, dev in enumerate(devices):
            s.add(
                Action(
                    tenant_id=tid,
                    rollout_id=r.id if i % 5 else other.id,
                    device_id=dev,
                    release_id=None,
                    phase=i % 3,
                    action_type="forced" if i % 4 == 0 else "soft",
                    status="success" if i % 3 == 0 else "scheduled",
                    active=bool(i % 3),
                    bytes_done=None if i % 2 else i * 2**33,  # None (nothing counted) reads as 0
                    history=[{"at": t0.isoformat(), "status": "scheduled", "source": "server", "message": 'ü "quoted"\n'}]
                    if i % 2
                    else [],
                    updated_at=t0 + dt.timedelta(microseconds=i * 250_000),
                )
            )
        rid = r.id
    # "" after "success": no filter, not the kept statement of "success" with its value
    for status in (None, "success", "", "canceled"):
        for limit in (1, 3, 100):
            after: tuple[int, ...] | None = None
            while True:
                with db.read() as s:
                    rows = action_page(s, rid, status, Page(limit, after))
                    page = action_page_json(s, rid, status, Page(limit, after))
                assert json.loads(page.body) == rows.items and page.next == rows.next, (status, limit)
                ACTIONS.validate_json(page.body)
                if page.next is None:
                    break
                after = page.next
    with db.read() as s:
        whole = json.loads(action_page_json(s, rid, None, Page(1000)).body)
    assert len(whole) == 18 and {a["rollout_id"] for a in whole} == {rid}  # not the other rollout's
    assert 0 in {a["bytes"] for a in whole} and all(a["device"] for a in whole)


def test_a_kept_statement_refuses_a_value_it_would_freeze() -> None:
    """A value bound without a name would keep its first request's value in the kept statement: refused when built."""
    url = "postgresql+psycopg://" + pg_url().removeprefix("postgresql://")
    migrate(url)
    db = Database(url)
    tid = _seed(db)
    pages = JsonList(Device.id, lambda: {"id": Device.id})
    with db.read() as s, pytest.raises(ValueError, match="unnamed"):
        pages.page(s, "frozen", lambda: select(Device.id).where(Device.tenant_id == tid), {}, Page(10))
    with db.read() as s:
        named = pages.page(s, "named", lambda: select(Device.id).where(Device.tenant_id == bindparam("t")), {"t": tid}, Page(10))
        other = pages.page(
            s, "named", lambda: select(Device.id).where(Device.tenant_id == bindparam("t")), {"t": tid + 1}, Page(10)
        )
    db.dispose()
    assert len(json.loads(named.body)) == 10 and json.loads(other.body) == [{"id": 24}]
