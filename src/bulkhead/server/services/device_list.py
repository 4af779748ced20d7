"""The device list: filters in SQL, keyset pages by id, and list rows without the large JSON columns.

A list row has what a fleet table shows (identity, tags, groups, attributes, OS version, update status, bytes,
last seen); the agent's inventory (`reported`: packages, containers, slots) and the desired files stay on the
device's own endpoint. Only the list's columns are read, so a page of 1,000 devices costs the same whether the
devices report 10 packages or 4,000.

Tags and groups are JSON arrays. On PostgreSQL they are jsonb columns (migration 0031) and a filter is a containment
(`CAST(tags AS JSONB) @> '["x"]'`, the cast a no-op there) that their GIN indexes answer; on SQLite it is a
`json_each` lookup per row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Row,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute, Session

from ..models import Device
from .json_pages import JsonList, JsonPage, iso_utc, rendered
from .keyset import Page, Paged, keyset, paged

__all__ = ["LIST_COLUMNS", "DeviceFilter", "array_counts", "device_page", "device_page_json", "group_counts", "json_array_has"]

LIST_COLUMNS = (
    Device.id,
    Device.name,
    Device.compatible,
    Device.status,
    Device.tags,
    Device.groups,
    Device.attributes,
    Device.os_version,
    Device.desired_release_id,
    Device.update_status,
    Device.bytes_served,
    Device.last_seen,
)


@dataclass(frozen=True)
class DeviceFilter:
    """Which devices a list holds; every given field must match."""

    tags: tuple[str, ...] = ()  # every one of these tags
    group: str | None = None
    status: str | None = None
    compatible: str | None = None
    version: str | None = None  # the OS version the device reported
    name_prefix: str | None = None
    seen_after: dt.datetime | None = None
    seen_before: dt.datetime | None = None


def json_array_has(
    s: Session, col: InstrumentedAttribute[Any], values: list[str], name: str | None = None
) -> ColumnElement[bool]:
    """SQL for "the JSON array in `col` holds every one of `values`" on the session's database.

    With a `name`, the values are bound parameters named after it (`name` itself, the whole list, on PostgreSQL;
    `name_0`, `name_1`, ... on SQLite), so that a kept statement (`json_pages.JsonList`) can run with other values.
    """
    if s.get_bind().dialect.name == "postgresql":
        return cast(col, JSONB).contains(bindparam(name, values, type_=JSONB))
    conds = []
    for i, v in enumerate(values):
        elements = func.json_each(col).table_valued("value")
        value: BindParameter[str] = bindparam(f"{name}_{i}" if name else None, v)
        conds.append(select(literal(1)).select_from(elements).where(elements.c.value == value).exists())
    return and_(*conds)


def array_counts(s: Session, tenant_id: int, col: InstrumentedAttribute[Any]) -> dict[str, int]:
    """How many of the tenant's devices name each value of their JSON array `col` (tags or groups).

    The database groups the devices by their whole array (a fleet has few distinct tag or group sets), so one
    pass over the devices returns a handful of rows, not one per device; the values are counted from those.
    """
    text = cast(col, Text)
    counts: Counter[str] = Counter()
    for raw, n in s.execute(select(text, func.count()).where(Device.tenant_id == tenant_id).group_by(text)):
        try:
            values = json.loads(raw) if raw else []
        except ValueError:
            continue
        if isinstance(values, list):
            counts.update({v: n for v in set(values) if isinstance(v, str)})
    return dict(counts)


def group_counts(s: Session, tenant_id: int) -> dict[str, int]:
    """How many of the tenant's devices are in each group their group lists name."""
    return array_counts(s, tenant_id, Device.groups)


def _where(s: Session, tenant_id: int, f: DeviceFilter) -> tuple[list[ColumnElement[bool]], dict[str, Any]]:
    """The tenant's devices that match `f`, and the values of its named bound parameters as PostgreSQL binds them
    (their names also tell the filter's shape: which filters are given)."""
    values: dict[str, Any] = {"f_tenant": tenant_id}
    conds: list[ColumnElement[bool]] = [Device.tenant_id == bindparam("f_tenant", tenant_id)]
    if f.tags:
        values["f_tags"] = list(f.tags)
        conds.append(json_array_has(s, Device.tags, list(f.tags), "f_tags"))
    if f.group:
        values["f_group"] = [f.group]
        conds.append(json_array_has(s, Device.groups, [f.group], "f_group"))
    for name, col, value in (
        ("f_status", Device.status, f.status),
        ("f_compatible", Device.compatible, f.compatible),
        ("f_version", Device.os_version, f.version),
    ):
        if value:
            values[name] = value
            conds.append(col == bindparam(name, value))
    if f.name_prefix:
        escaped = f.name_prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
        values["f_name"] = escaped + "%"
        conds.append(Device.name.like(bindparam("f_name", escaped + "%"), escape="/"))  # one pattern: an index can use it
    if f.seen_after is not None:
        values["f_seen_after"] = f.seen_after
        conds.append(Device.last_seen >= bindparam("f_seen_after", f.seen_after, type_=Device.last_seen.type))
    if f.seen_before is not None:
        values["f_seen_before"] = f.seen_before
        conds.append(Device.last_seen < bindparam("f_seen_before", f.seen_before, type_=Device.last_seen.type))
    return conds, values


def _row_json(r: Row[Any]) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "compatible": r.compatible,
        "status": r.status,
        "tags": r.tags,
        "groups": r.groups,
        "attributes": r.attributes,
        "desired_release_id": r.desired_release_id,
        "update": r.update_status or {},
        "bytes_served": r.bytes_served,
        "last_seen": r.last_seen.isoformat() if r.last_seen else None,
        "os_version": r.os_version,  # last, where DeviceRow's field order (the API's answers until now) put it
    }


def device_page(s: Session, tenant_id: int, f: DeviceFilter, page: Page) -> Paged[dict[str, Any]]:
    """One page of the tenant's devices that match `f`, by id."""
    q = select(*LIST_COLUMNS).where(*_where(s, tenant_id, f)[0])
    rows = s.execute(keyset(q, [Device.id], page)).all()
    return paged(rows, page, lambda r: (r.id,), _row_json)


def _pg_fields() -> dict[str, Any]:
    """`_row_json`'s fields as PostgreSQL expressions (the same JSON value, see `json_pages`)."""
    update = Device.update_status
    return {
        "id": Device.id,
        "name": Device.name,
        "compatible": Device.compatible,
        "status": Device.status,
        "tags": Device.tags,
        "groups": Device.groups,
        "attributes": Device.attributes,
        "desired_release_id": Device.desired_release_id,
        "update": case(
            (or_(update.is_(None), func.json_typeof(update) == literal_column("'null'")), literal_column("'{}'::json")),
            else_=update,
        ),
        "bytes_served": Device.bytes_served,
        "last_seen": iso_utc(Device.last_seen),
        "os_version": Device.os_version,
    }


_JSON = JsonList(Device.id, _pg_fields)


def device_page_json(s: Session, tenant_id: int, f: DeviceFilter, page: Page) -> JsonPage:
    """`device_page` as JSON text: written by PostgreSQL on PostgreSQL (the API's hot path), else from the rows."""
    if s.get_bind().dialect.name != "postgresql":
        return rendered(device_page(s, tenant_id, f, page))
    conds, values = _where(s, tenant_id, f)
    return _JSON.page(s, "devices", lambda: select(Device.id).where(*conds), values, page)
