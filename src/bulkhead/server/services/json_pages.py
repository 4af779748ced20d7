"""List pages as JSON text, written by PostgreSQL itself where the list is hot.

A page of 100 devices cost the server about 5 ms of Python, most of it in turning rows into objects and back:
psycopg parsing each row's JSON columns, SQLAlchemy building rows, a dict per row, pydantic validating and dumping
it. PostgreSQL can write the page's JSON array itself (`json_build_object` per row, `json_agg` over the page) in
a fraction of a millisecond, and the server hands that text to the client as it is. Building the statement that
does so took another 0.6 ms on a quiet process and, measured under load, about half of what was left of a
request's Python; so a `JsonList` builds it once per *shape* of the list's filters (which of them are given) and
runs it with each request's values as bound parameters. On PostgreSQL a hot list then costs one statement and no
per-row Python. Other databases (SQLite, the embedded default) get the same JSON from the rows in Python.

The JSON is the same value either way, field for field (times as Python's `isoformat()` of the UTC time writes
them, see `iso_utc`); `tests/server/test_json_pages.py` compares the two on PostgreSQL and validates both against
the API's response model, which the route still declares for its OpenAPI description.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Integer, Select, Text, bindparam, case, cast, func, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import InstrumentedAttribute, Session

from .keyset import Page, Paged, check_after

__all__ = ["JsonList", "JsonPage", "iso_utc", "rendered"]

_FIELD = re.compile(r"[a-z_][a-z0-9_]*\Z")
_PAGE_PARAMS = frozenset({"page_limit", "page_fetch", "page_after"})
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class JsonPage:
    """One page of a list as a JSON array (UTF-8), and the key of its last row when more rows follow."""

    body: bytes
    next: tuple[Any, ...] | None = None


def rendered(paged: Paged[dict[str, Any]]) -> JsonPage:
    """A page of rows rendered in Python (JSON-ready dicts) as a JsonPage."""
    return JsonPage(json.dumps(paged.items, separators=(",", ":"), ensure_ascii=False).encode(), paged.next)


def iso_utc(col: Any) -> ColumnElement[str]:
    """PostgreSQL text of a timestamptz exactly as Python's `isoformat()` of the same time in UTC writes it.

    `2026-12-04T21:50:58.123400+00:00`, and without the fraction when it is zero (as `isoformat` does); NULL stays
    NULL. (`to_json` of a timestamptz would trim the fraction's zeros and follow the session's time zone.) Its
    constants are SQL literals, not bound values, so that a `JsonList` statement binds only its call's values.
    """
    utc = func.timezone(literal_column("'UTC'"), col)
    fraction = func.to_char(utc, literal_column("'.US'"))
    return (
        func.to_char(utc, literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS'"))
        .concat(case((fraction == literal_column("'.000000'"), literal_column("''")), else_=fraction))
        .concat(literal_column("'+00:00'"))
    )


class JsonList:
    """A hot list on PostgreSQL: keyset pages by one integer key, ascending, as JSON arrays of `fields`.

    `page()` takes the list's shape (what tells its statements apart: which filters are given), a function that
    builds the FROM and WHERE for that shape with every value a named `bindparam`, and those values. The statement
    is built on the shape's first page and kept, per shape, names of the values and first page or not (the device
    list's eight optional filters make at most 512).
    A value that is not a named parameter would be frozen into the kept statement with its first request's value,
    so building one refuses any bound value the caller did not name.
    """

    def __init__(self, key: InstrumentedAttribute[int], fields: Callable[[], Mapping[str, Any]], keep: int = 1024) -> None:
        self.key = key
        self.fields = fields
        self.keep = keep
        self._statements: dict[tuple[Hashable, tuple[str, ...], bool], Select[str, int, Any]] = {}

    def page(self, s: Session, shape: Hashable, base: Callable[[], Select[Any]], values: dict[str, Any], page: Page) -> JsonPage:
        check_after(page, [self.key])
        after = page.after is not None
        # The values' names are part of the key: a statement runs only with values for every parameter it names
        # (a name left out would bind the value it was built with).
        key = (shape, tuple(sorted(values)), after)
        stmt = self._statements.get(key)
        if stmt is None:
            stmt = self._build(base(), after, set(values))
            if len(self._statements) >= self.keep:  # more shapes than a list can have: start over
                self._statements.clear()
            self._statements[key] = stmt
        bound = {**values, "page_limit": page.limit, "page_fetch": page.limit + 1}
        if page.after is not None:
            bound["page_after"] = page.after[0]
        text, count, last = s.execute(stmt, bound).one()
        return JsonPage(text.encode(), (last,) if count > page.limit else None)

    def _build(self, base: Select[Any], after: bool, names: set[str]) -> Select[str, int, Any]:
        fields = self.fields()
        if not all(_FIELD.match(name) for name in fields):  # names are SQL literals below: identifiers only
            raise ValueError(f"field names must be identifiers: {list(fields)}")
        obj = func.json_build_object(*chain.from_iterable((literal_column(f"'{n}'"), e) for n, e in fields.items()))
        q = base.with_only_columns(obj.label("obj"), self.key.label("k"))
        if after:
            q = q.where(self.key > bindparam("page_after"))
        rows = q.order_by(self.key).limit(bindparam("page_fetch")).subquery("page_rows")
        numbered = select(rows, func.row_number().over(order_by=rows.c.k).label("n")).subquery("numbered")
        limit: BindParameter[int] = bindparam("page_limit", type_=Integer)
        array = cast(func.json_agg(aggregate_order_by(numbered.c.obj, numbered.c.n)).filter(numbered.c.n <= limit), Text)
        stmt: Select[str, int, Any] = select(
            func.coalesce(array, literal_column("'[]'")), func.count(), func.max(numbered.c.k).filter(numbered.c.n == limit)
        )
        frozen = set(stmt.compile(dialect=_PG).params) - names - _PAGE_PARAMS
        if frozen:
            raise ValueError(f"a kept list statement may bind only its call's values; unnamed: {sorted(frozen)}")
        return stmt
