"""Keyset pagination for list queries: one page of rows after a key, in a stable order, never OFFSET.

A list query is ordered by a unique key (its id, or a name and its id); a page asks for `limit + 1` rows after
the last key of the previous page, so a page costs the same at row 10 and at row 100,000, and rows inserted or
deleted between two page reads neither repeat nor hide others. The API edge (`api/paging.py`) turns the key of
a page's last row into an opaque cursor and back; this module only checks that a key fits its columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, literal, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from ..errors import Invalid
from ..ids import MAX_INT64

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "BadCursor", "Page", "Paged", "check_after", "keyset", "paged"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_MAX_TEXT = 1024

T = TypeVar("T")
S = TypeVar("S", bound=Select)  # type: ignore[type-arg]
R = TypeVar("R")


class BadCursor(Invalid):
    """A cursor this list did not hand out (malformed, edited, or from another list)."""

    def __init__(self, why: str = "") -> None:
        super().__init__(
            f"the cursor is not one this list handed out{f' ({why})' if why else ''}: "
            'start again without a cursor, then follow the X-Next-Cursor header (or the Link rel="next" URL)'
        )


@dataclass(frozen=True)
class Page:
    """Which page to read: at most `limit` rows after the key `after` (None: the first page)."""

    limit: int = DEFAULT_LIMIT
    after: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Paged(Generic[T]):
    """One page of a list and the key of its last row when more rows follow (None on the last page)."""

    items: list[T]
    next: tuple[Any, ...] | None = None


def _check(after: tuple[Any, ...], cols: Sequence[InstrumentedAttribute[Any]]) -> None:
    if len(after) != len(cols):
        raise BadCursor("wrong shape")
    for value, col in zip(after, cols, strict=True):
        want = col.type.python_type
        if want is int:
            if type(value) is not int or not -MAX_INT64 <= value <= MAX_INT64:
                raise BadCursor("not a key of this list")
        elif want is str:
            if type(value) is not str or len(value) > _MAX_TEXT or "\x00" in value:
                raise BadCursor("not a key of this list")
        else:  # pragma: no cover - a programming error: keys are ids and names
            raise TypeError(f"keyset column {col} must be an integer or a string")


def check_after(page: Page, cols: Sequence[InstrumentedAttribute[Any]]) -> None:
    """Refuse a page key that does not fit `cols` (for lists paged outside SQL, such as the groups)."""
    if page.after is not None:
        _check(page.after, cols)


def keyset(q: S, cols: Sequence[InstrumentedAttribute[Any]], page: Page, *, descending: bool = False) -> S:
    """`q` restricted to the rows after `page.after` in the order of `cols` (unique together), `limit + 1` of them."""
    if page.after is not None:
        _check(page.after, cols)
        if len(cols) == 1:
            col, value = cols[0], page.after[0]
            q = q.where(col < value if descending else col > value)
        else:
            key = tuple_(*cols)
            value_row = tuple_(*(literal(v, c.type) for v, c in zip(page.after, cols, strict=True)))
            q = q.where(key < value_row if descending else key > value_row)
    order = [c.desc() for c in cols] if descending else [c.asc() for c in cols]
    return q.order_by(*order).limit(page.limit + 1)


def paged(rows: Sequence[R], page: Page, key: Callable[[R], tuple[Any, ...]], render: Callable[[R], T]) -> Paged[T]:
    """The page from the `limit + 1` rows `keyset` fetched: `limit` rendered rows and the next key if there were more."""
    more = len(rows) > page.limit
    kept = rows[: page.limit]
    return Paged([render(r) for r in kept], key(kept[-1]) if more and kept else None)
