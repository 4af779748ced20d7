"""Devices' inventories in a table of their own (models.DeviceInventory, migration 0032): the devices table holds no
inventory, an inventory lives and dies with its device, and the migration moves existing inventories both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, func, insert, inspect, select, text

from bulkhead.server.db import Database, _alembic_config
from bulkhead.server.models import Device, DeviceInventory, Tenant
from tests.pg import pg_url

INVENTORY = {
    "os_version": "2.1",
    "packages": {"format": "dpkg", "count": 40, "packages": {f"lib-{i:03d}": f"1.{i}.{i * 7 % 13}-deb12u1" for i in range(40)}},
    "rauc": {"booted": "A", "slots": {"rootfs.0": {"state": "booted"}}},
}


def _url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return "postgresql+psycopg://" + pg_url().removeprefix("postgresql://")


def _migrate(url: str, revision: str) -> None:
    command.upgrade(_alembic_config(url), revision)


def test_an_inventory_lives_and_dies_with_its_device(db: Database) -> None:
    with db.session() as s:
        t = Tenant(name="t")
        s.add(t)
        s.flush()
        s.add_all(
            [
                Device(tenant_id=t.id, name="with", compatible="c", reported=INVENTORY),
                Device(tenant_id=t.id, name="none", compatible="c"),
            ]
        )
    with db.session() as s:
        with_, none = (s.scalar(select(Device).where(Device.name == n)) for n in ("with", "none"))
        assert with_ is not None and none is not None
        assert with_.reported == INVENTORY and none.reported == {}
        assert s.scalar(select(func.count()).select_from(DeviceInventory)) == 1, "an empty inventory takes no row"
        none.reported = {"os_version": "1"}
        with_.reported = {**with_.reported, "os_version": "2.2"}
    with db.session() as s:
        got = {d.name: d.reported for d in s.scalars(select(Device))}
        assert got == {"with": {**INVENTORY, "os_version": "2.2"}, "none": {"os_version": "1"}}
        dev = s.scalar(select(Device).where(Device.name == "with"))
        s.delete(dev)
    with db.session() as s:
        left = list(
            s.execute(select(DeviceInventory.device_id, Device.name).join(Device, Device.id == DeviceInventory.device_id))
        )
        assert [name for _, name in left] == ["none"], "the deleted device's inventory went with it"
        s.execute(text("DELETE FROM devices"))  # not through the ORM: the foreign key's cascade
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(DeviceInventory)) == 0


def test_the_devices_table_holds_no_inventory() -> None:
    """What the move is for: a fleet's inventories do not widen the rows every fleet scan reads (PostgreSQL keeps a
    value under 2 kB in its row: there, 1,000 devices with this inventory took 1.9 MB)."""
    url = _url("postgresql", Path())
    _migrate(url, "head")
    db = Database(url)
    try:
        with db.session() as s:
            t = Tenant(name="t")
            s.add(t)
            s.flush()
            s.add_all(Device(tenant_id=t.id, name=f"d{i}", compatible="c", reported={**INVENTORY, "n": i}) for i in range(1000))
        with db.session() as s:
            devices = s.scalar(text("SELECT pg_relation_size('devices')")) or 0
            inventories = s.scalar(text("SELECT pg_total_relation_size('device_inventories')")) or 0
        per_inventory = len(json.dumps(INVENTORY))
        assert per_inventory > 1200  # a small dpkg inventory: in the row, it made up most of it
        assert devices < 1000 * 500, f"the devices table is {devices} bytes for 1,000 devices: it holds their inventories"
        assert inventories > 1000 * per_inventory / 10, "the inventories are stored (compressed at most tenfold)"
    finally:
        db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0032_moves_inventories_out_of_the_devices_row_and_back(kind: str, tmp_path: Path) -> None:
    url = _url(kind, tmp_path)
    _migrate(url, "0031")
    engine = create_engine(url)
    with engine.begin() as c:
        tid = c.execute(insert(Tenant.__table__).values(name="t").returning(Tenant.__table__.c.id)).scalar_one()
        for name, reported in (("full", INVENTORY), ("empty", {}), ("quote", {"os_version": 'it\'s "1"'})):
            c.execute(
                text(
                    "INSERT INTO devices (tenant_id, name, compatible, status, tags, groups, attributes, reported, "
                    "bytes_served, desired, update_status, report_seq, attributes_wanted, created_at, credential_epoch, "
                    "reenroll_allowed) VALUES (:t, :n, 'c', 'active', '[]', '[]', '{}', :r, 0, '{}', '{}', 0, false, "
                    "CURRENT_TIMESTAMP, 0, false)"
                ),
                {"t": tid, "n": name, "r": json.dumps(reported)},
            )
    engine.dispose()

    _migrate(url, "0032")
    engine = create_engine(url)
    assert "reported" not in {c["name"] for c in inspect(engine).get_columns("devices")}
    engine.dispose()
    engine = create_engine(url)  # read with SQL: the ORM's models are the newest revision's, not 0032's
    with engine.connect() as c:
        rows = c.execute(text("SELECT d.name, i.reported FROM devices d LEFT JOIN device_inventories i ON i.device_id = d.id"))
        moved = {n: (r if isinstance(r, dict) else json.loads(r)) if r is not None else {} for n, r in rows}
        assert moved == {"full": INVENTORY, "empty": {}, "quote": {"os_version": 'it\'s "1"'}}
        assert c.execute(text("SELECT count(*) FROM device_inventories")).scalar() == 2, "an empty inventory is not copied"
    engine.dispose()

    command.downgrade(_alembic_config(url), "0031")
    engine = create_engine(url)
    with engine.connect() as c:
        back = {n: r if isinstance(r, dict) else json.loads(r) for n, r in c.execute(text("SELECT name, reported FROM devices"))}
    assert back == {"full": INVENTORY, "empty": {}, "quote": {"os_version": 'it\'s "1"'}}
    assert "device_inventories" not in inspect(engine).get_table_names()
    engine.dispose()
