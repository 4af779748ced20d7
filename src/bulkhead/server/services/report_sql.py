"""The statements of a report batch: PostgreSQL through the driver, SQLite through SQLAlchemy core.

A batch runs four statements whatever its size (five when inventories changed): lock the devices' rows, insert the
new events, update the devices (and their inventories, a table of their own), find which of them a rollout waits
for. On PostgreSQL each is one fixed text sent through psycopg on the session's own connection (same transaction):
psycopg prepares it once per connection, and neither SQLAlchemy's statement cache keys nor its result machinery run
per batch (a profile at 100k devices had them at a third of the report path's time). Rows go in as one JSON document
(json_to_recordset) or as arrays in their text form: the json module's C encoder, not the driver's adaptation of
each value.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..models import Action, Device, DeviceEvent, DeviceInventory
from .inventory import Inventory
from .rollout_sql import is_pg, offered

__all__ = ["WRITTEN", "Locked", "insert_events", "lock_devices", "update_devices", "waited_devices"]

_DEVICES: Table = Device.__table__  # type: ignore[assignment]
_EVENTS: Table = DeviceEvent.__table__  # type: ignore[assignment]
_INVENTORIES: Table = DeviceInventory.__table__  # type: ignore[assignment]
# The device columns a report writes (`reported`: the device's row in device_inventories); none is ever NULL.
WRITTEN = ("last_seen", "report_seq", "update_status", "reported_sha256", "reported")


class Locked(NamedTuple):
    id: int
    report_seq: int
    reported_sha256: str | None
    os_version: str | None
    tenant_id: int
    name: str
    status: str
    credential_hash: str | None
    previous_credential_hash: str | None


def _driver(s: Session) -> Any:
    """The session's psycopg connection, inside the session's transaction."""
    return s.connection().connection.driver_connection


def _ids(values: Iterable[int]) -> str:
    """An integer[] in its text form (PostgreSQL parses that far faster than the driver adapts a list)."""
    return "{" + ",".join(map(str, values)) + "}"


_LOCKED = Locked._fields
_LOCK_PG = (
    f"SELECT {', '.join(_LOCKED)} FROM devices WHERE id = ANY(%s::integer[]) "
    "OR credential_hash = ANY(%s::text[]) OR previous_credential_hash = ANY(%s::text[]) ORDER BY id FOR NO KEY UPDATE"
)
_INSERT_EVENTS_PG = (
    "INSERT INTO device_events (tenant_id, device_id, seq, kind, phase, release_id, details, device_time, at) "
    "SELECT t, d, q, k, p, r, j, dt, %s FROM json_to_recordset(%s::json) "
    "AS e(t INTEGER, d INTEGER, q BIGINT, k VARCHAR, p VARCHAR, r INTEGER, j JSON, dt TIMESTAMPTZ)"
)
_SEEN_PG = "UPDATE devices SET last_seen = %s WHERE id = ANY(%s::integer[])"
_SEEN_SEQ_PG = (
    "UPDATE devices SET last_seen = %s, report_seq = b.seq "
    "FROM unnest(%s::integer[], %s::bigint[]) AS b(id, seq) WHERE devices.id = b.id"
)
# Any other set of columns: NULL where a device's row keeps its value. One text for every batch.
_UPDATE_PG = (
    "UPDATE devices SET last_seen = %s, report_seq = COALESCE(b.seq, devices.report_seq), "
    "update_status = COALESCE(b.status, devices.update_status), "
    "reported_sha256 = COALESCE(b.sha, devices.reported_sha256) "
    "FROM json_to_recordset(%s::json) AS b(id INTEGER, seq BIGINT, status JSON, sha VARCHAR) "
    "WHERE devices.id = b.id"
)
_INVENTORIES_PG = (
    "INSERT INTO device_inventories (device_id, reported) "
    "SELECT b.id, b.inv FROM json_to_recordset(%s::json) AS b(id INTEGER, inv JSON) "
    "ON CONFLICT (device_id) DO UPDATE SET reported = EXCLUDED.reported"
)
# rollout_sql.offered(): the action's phase is open.
_WAITED_PG = (
    "SELECT DISTINCT a.device_id FROM actions a WHERE a.device_id = ANY(%s::integer[]) AND a.active "
    "AND a.phase < (SELECT r.phases_started FROM rollouts r WHERE r.id = a.rollout_id)"
)


def lock_devices(s: Session, ids: list[int], credentials: list[str]) -> list[Locked]:
    """Lock the rows of the devices with these ids or holding these credentials (hashes: the current one or the one
    before a rotation), in id order (concurrent batches cannot deadlock); the rows that exist.

    FOR NO KEY UPDATE, the lock the update itself takes: rows that name a device (a scan's device profiles, its
    actions) take a key-share lock on it, which a report must not wait for (nor they for a report)."""
    if is_pg(s):
        return [Locked(*row) for row in _driver(s).execute(_LOCK_PG, (_ids(ids), credentials, credentials), prepare=True)]
    c = _DEVICES.c
    rows = s.execute(
        select(*(c[name] for name in _LOCKED))
        .where(or_(c.id.in_(ids), c.credential_hash.in_(credentials), c.previous_credential_hash.in_(credentials)))
        .order_by(c.id)
        .with_for_update(key_share=True)
    )
    return [Locked(*row) for row in rows]


def insert_events(s: Session, rows: list[dict[str, Any]], now: dt.datetime) -> None:
    """Insert new events (dicts of DeviceEvent's columns; `at` is `now`)."""
    if not rows:
        return
    if is_pg(s):
        _driver(s).execute(_INSERT_EVENTS_PG, (now, _event_rows_json(rows)), prepare=True)
    else:
        s.execute(insert(_EVENTS), rows)


def update_devices(s: Session, rows: list[tuple[int, dict[str, Any]]], now: dt.datetime, seqs: dict[int, int]) -> None:
    """Each device's new values (of WRITTEN; an inventory as Inventory), in id order; `seqs`: each device's seq.

    PostgreSQL: one statement per batch (arrays for the usual sets of columns, JSON rows for any other), and one
    upsert of the inventories that changed; SQLite: one executemany per set of columns, and one for inventories."""
    if not rows:
        return
    assert all(set(v) <= set(WRITTEN) for _, v in rows), "a report writes a column the update does not"
    inventories: list[tuple[int, Inventory]] = [(device_id, v["reported"]) for device_id, v in rows if "reported" in v]
    if inventories:  # the devices' own columns (most batches carry no inventory: no copy then)
        rows = [(device_id, {k: x for k, x in v.items() if k != "reported"}) for device_id, v in rows]
    if is_pg(s):
        raw = _driver(s)
        ids = [device_id for device_id, _ in rows]
        shapes = {tuple(sorted(v)) for _, v in rows}
        if shapes == {("last_seen",)}:
            raw.execute(_SEEN_PG, (now, _ids(ids)), prepare=True)
        elif shapes <= {("last_seen",), ("last_seen", "report_seq")}:
            raw.execute(_SEEN_SEQ_PG, (now, _ids(ids), _ids(seqs[i] for i in ids)), prepare=True)
        else:
            raw.execute(_UPDATE_PG, (now, _device_rows_json(rows)), prepare=True)
        if inventories:
            raw.execute(_INVENTORIES_PG, (_inventory_rows_json(inventories),), prepare=True)
        return
    groups: defaultdict[tuple[str, ...], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for device_id, v in rows:
        groups[tuple(sorted(v))].append((device_id, v))
    for columns, group in groups.items():
        stmt = update(_DEVICES).where(_DEVICES.c.id == bindparam("b_id")).values({c: bindparam(f"v_{c}") for c in columns})
        s.execute(stmt, [{"b_id": device_id, **{f"v_{c}": v[c] for c in columns}} for device_id, v in group])
    if inventories:
        upsert = sqlite_insert(_INVENTORIES)
        upsert = upsert.on_conflict_do_update(index_elements=["device_id"], set_={"reported": upsert.excluded.reported})
        s.execute(upsert, [{"device_id": device_id, "reported": inv.parsed()} for device_id, inv in inventories])


def waited_devices(s: Session, ids: list[int]) -> set[int]:
    """Which of these devices have an action a rollout waits for (active, its phase open)."""
    if is_pg(s):
        return {row[0] for row in _driver(s).execute(_WAITED_PG, (_ids(ids),), prepare=True)}
    return set(
        s.scalars(select(Action.device_id).where(Action.device_id.in_(ids), Action.active.is_(True), offered()).distinct())
    )


def _utc(t: dt.datetime | None) -> str | None:
    return None if t is None else (t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t).isoformat()


def _event_rows_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(
        [
            {
                "t": r["tenant_id"],
                "d": r["device_id"],
                "q": r["seq"],
                "k": r["kind"],
                "p": r["phase"],
                "r": r["release_id"],
                "j": r["details"],
                "dt": _utc(r["device_time"]),
            }
            for r in rows
        ]
    )


def _device_rows_json(rows: list[tuple[int, dict[str, Any]]]) -> str:
    return json.dumps(
        [
            {"id": device_id, "seq": v.get("report_seq"), "status": v.get("update_status"), "sha": v.get("reported_sha256")}
            for device_id, v in rows
        ]
    )


def _inventory_rows_json(rows: list[tuple[int, Inventory]]) -> str:
    """_INVENTORIES_PG's rows: each inventory goes in as the JSON text the device sent (checked when the report was
    read), neither parsed nor serialized again."""
    return "[" + ",".join(f'{{"id":{device_id},"inv":{inv.json_text()}}}' for device_id, inv in rows) + "]"
