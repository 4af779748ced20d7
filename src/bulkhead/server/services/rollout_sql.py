"""Set-based SQL of rollouts: the devices a target selects, bulk action inserts and status changes with their
history entry, and progress counted by the database (the same SQL on SQLite and PostgreSQL).

Nothing here loops over devices in Python: a rollout's statements do not grow in number with its devices.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY, BIT, JSONB
from sqlalchemy.orm import Session

from ..models import Action, Device, Rollout, StateChange, UTCDateTime

__all__ = [
    "HISTORY_LIMIT",
    "TENANT_WIDE_AFTER",
    "history_append",
    "history_entry",
    "insert_actions",
    "insert_ranked",
    "is_pg",
    "json_array_has",
    "latest",
    "mark_devices",
    "mark_tenant",
    "matching_devices",
    "offered",
    "target_filter",
]

HISTORY_LIMIT = 100
# More devices than this changed at once: one tenant-wide state change instead of one row per device (every
# process then recomputes the tenant's poll answers once, instead of reading that many rows of the feed).
TENANT_WIDE_AFTER = 500

ACTIONS = cast(Table, Action.__table__)


def is_pg(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def json_array_has(s: Session, column: Any, value: str) -> ColumnElement[bool]:
    """The JSON array of strings in `column` contains `value`."""
    if is_pg(s):
        return sql_cast(column, JSONB).contains([value])
    each = func.json_each(column).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == value))


def target_filter(s: Session, target: Mapping[str, Any]) -> list[ColumnElement[bool]]:
    """`rollout_plan.matches` as SQL conditions on `devices`: compatible, every tag, any group, every attribute."""
    conds: list[ColumnElement[bool]] = []
    if target.get("compatible"):
        conds.append(Device.compatible == target["compatible"])
    for tag in target.get("tags") or []:
        conds.append(json_array_has(s, Device.tags, tag))
    groups = target.get("groups") or []
    if groups:
        conds.append(or_(*(json_array_has(s, Device.groups, g) for g in groups)))
    for key, value in (target.get("attributes") or {}).items():
        conds.append(Device.attributes[key].as_string() == value)
    return conds


def matching_devices(s: Session, tenant_id: int, target: Mapping[str, Any], with_groups: bool) -> Any:
    """A select of the active devices the target matches: their ids, and their groups if `with_groups`."""
    cols: list[Any] = [Device.id, Device.groups] if with_groups else [Device.id]
    return select(*cols).where(Device.tenant_id == tenant_id, Device.status == "active", *target_filter(s, target))


def history_entry(status: str, message: str | None, now: dt.datetime, source: str = "server") -> dict[str, Any]:
    entry: dict[str, Any] = {"at": now.isoformat(), "status": status, "source": source}
    if message:
        entry["message"] = message[:2000]
    return entry


def history_append(s: Session, entry: Mapping[str, Any]) -> Any:
    """An actions.history value: the current history with `entry` appended, the oldest entry dropped at the limit."""
    h = ACTIONS.c.history
    text = json.dumps(entry)
    if is_pg(s):
        hb = sql_cast(func.coalesce(h, sql_cast("[]", JSON)), JSONB)
        trimmed = case((func.json_array_length(h) >= HISTORY_LIMIT, hb.op("-")(0)), else_=hb)
        return sql_cast(trimmed.op("||")(sql_cast(bindparam(None, text, type_=String), JSONB)), JSON)
    base = func.coalesce(h, "[]")
    trimmed = case((func.json_array_length(h) >= HISTORY_LIMIT, func.json_remove(h, "$[0]")), else_=base)
    return func.json_insert(trimmed, "$[#]", func.json(bindparam(None, text, type_=String)))


def _json_value(s: Session, value: Any) -> Any:
    """A JSON constant for the select list of an INSERT ... SELECT."""
    text = json.dumps(value)
    if is_pg(s):
        return sql_cast(bindparam(None, text, type_=String), JSON)
    return func.json(bindparam(None, text, type_=String))


_ACTION_COLUMNS = [
    "tenant_id",
    "rollout_id",
    "device_id",
    "release_id",
    "app_id",
    "phase",
    "action_type",
    "status",
    "active",
    "superseded",
    "history",
    "created_at",
    "updated_at",
]


def int_array(values: Sequence[int]) -> Any:
    """An integer[] parameter, sent as its text form (PostgreSQL parses that far faster than the driver adapts a list)."""
    text = "{" + ",".join(map(str, values)) + "}"
    return sql_cast(bindparam(None, text, type_=String), ARRAY(Integer))


def _pairs(s: Session, pairs: Sequence[tuple[int, int]]) -> Any:
    """(device id, phase) pairs as a table for INSERT ... SELECT (PostgreSQL: two arrays unnested, one statement)."""
    ids, phases = [d for d, _ in pairs], [p for _, p in pairs]
    return func.unnest(int_array(ids), int_array(phases)).table_valued("device_id", "phase").render_derived()


def _action_select(s: Session, r: Rollout, device_id: Any, phase: Any, why: str, now: dt.datetime, history: Any = None) -> Any:
    stamp = bindparam(None, now, type_=UTCDateTime())
    return select(
        literal(r.tenant_id, Integer),
        literal(r.id, Integer),
        device_id,
        sql_cast(literal(r.release_id, Integer), Integer),
        sql_cast(literal(r.app_id, Integer), Integer),
        phase,
        literal(r.action_type, String),
        literal("scheduled", String),
        literal(True, Boolean),
        literal(False, Boolean),
        history if history is not None else _json_value(s, [history_entry("scheduled", why, now)]),
        stamp,
        stamp,
    )


def bucket_sql(rollout_id: int, device_id: Any) -> ColumnElement[Any]:
    """rollout_plan._bucket on PostgreSQL: the first four bytes of sha256('<rollout>:<device>'), big-endian, mod 100
    (one digest per row: its first 8 hex digits read as a 32-bit string)."""
    digest = func.sha256(func.convert_to(func.concat(f"{rollout_id}:", device_id), "UTF8"))
    first = func.concat("x", func.substr(func.encode(digest, "hex"), 1, 8))
    return sql_cast(sql_cast(first, BIT(32)), BigInteger) % 100


def insert_ranked(s: Session, r: Rollout, bounds: Sequence[tuple[int, int]], now: dt.datetime) -> int:
    """PostgreSQL: the first placement of a rollout without group phases in one INSERT ... SELECT. The database ranks
    the matching devices by (bucket, id) and gives each rank range its phase (`bounds`, rollout_plan.rank_bounds):
    the phases `allocate_new` would choose, without reading a device id into Python. Returns the actions made."""
    rank = func.row_number().over(order_by=(bucket_sql(r.id, Device.id), Device.id))
    ranked = matching_devices(s, r.tenant_id, r.target, False).add_columns(rank.label("rank")).subquery()
    last = len(r.phases) - 1
    whens = [(ranked.c.rank <= upto, i) for upto, i in bounds]
    phase = case(*whens, else_=last) if whens else literal(last, Integer)

    def history(i: int) -> Any:
        return _json_value(s, [history_entry("scheduled", f"phase {i + 1} ('{r.phases[i]['name']}')", now)])

    entries = case(*((cond, history(i)) for cond, i in whens), else_=history(last)) if whens else history(last)
    # Phase by phase, each in device order (as one insert per phase would write them): the indexes then grow at
    # their ends (in bucket order the same insert took half as long again).
    rows = _action_select(s, r, ranked.c.id, phase, "", now, history=entries).order_by(phase, ranked.c.id)
    result = s.execute(insert(ACTIONS).from_select(_ACTION_COLUMNS, rows))
    return int(getattr(result, "rowcount", 0) or 0)


def insert_actions(s: Session, r: Rollout, pairs: Sequence[tuple[int, int]], why: str, now: dt.datetime) -> None:
    """New scheduled actions of the rollout's devices, (device id, phase) pairs: one statement on PostgreSQL."""
    if not pairs:
        return
    if not is_pg(s):
        history = [history_entry("scheduled", why, now)]
        rows = [
            {
                "tenant_id": r.tenant_id,
                "rollout_id": r.id,
                "device_id": d,
                "release_id": r.release_id,
                "app_id": r.app_id,
                "phase": p,
                "action_type": r.action_type,
                "status": "scheduled",
                "active": True,
                "superseded": False,
                "history": history,
                "created_at": now,
                "updated_at": now,
            }
            for d, p in pairs
        ]
        s.execute(insert(ACTIONS), rows)
        return
    src = _pairs(s, pairs)
    s.execute(insert(ACTIONS).from_select(_ACTION_COLUMNS, _action_select(s, r, src.c.device_id, src.c.phase, why, now)))


def mark_devices(s: Session, tenant_id: int, device_ids: Sequence[int], now: dt.datetime) -> None:
    """Tell every server process's poll cache that these devices' answers changed (the change feed of changes.py).

    Core statements bypass the ORM events the feed listens to, so they record their changes here: one row per
    device, or one tenant-wide row when many devices changed at once."""
    if not device_ids:
        return
    pending: set[tuple[int | None, int | None]] = s.info.setdefault("state_changes", set())
    wide = len(device_ids) > TENANT_WIDE_AFTER
    changes: list[tuple[int | None, int | None]] = (
        [(tenant_id, None)] if wide else [(tenant_id, d) for d in sorted(set(device_ids))]
    )
    fresh = [c for c in changes if c not in pending]
    if fresh:
        s.execute(insert(StateChange), [{"tenant_id": t, "device_id": d, "at": now} for t, d in fresh])
        pending.update(fresh)


def mark_tenant(s: Session, tenant_id: int, now: dt.datetime) -> None:
    """Every device of the tenant may have a new poll answer (one row of the change feed)."""
    pending: set[tuple[int | None, int | None]] = s.info.setdefault("state_changes", set())
    if (tenant_id, None) not in pending:
        s.execute(insert(StateChange), [{"tenant_id": tenant_id, "device_id": None, "at": now}])
        pending.add((tenant_id, None))


def offered() -> ColumnElement[bool]:
    """An action its device is offered: its phase is open. (A subquery, not a join: a device path that locks its
    action must not lock the rollout's row.)"""
    opened = select(Rollout.phases_started).where(Rollout.id == Action.rollout_id).correlate(Action).scalar_subquery()
    return Action.phase < opened


def is_offered(s: Session, action: Action) -> bool:
    """One loaded action is offered to its device (its phase is open)."""
    opened = s.scalar(select(Rollout.phases_started).where(Rollout.id == action.rollout_id))
    return opened is not None and action.phase < opened


def latest(rollout_id: int) -> ColumnElement[bool]:
    """A rollout's actions that count: each device's newest attempt."""
    return and_(Action.rollout_id == rollout_id, Action.superseded.is_(False))
