"""Paging of the management API's lists: `?limit=` and `?cursor=` in, an array plus `X-Next-Cursor` and `Link` out.

Every list route takes a `Pager` (`pager: Pager = Depends(pager)`), hands `pager.page` to its service (which
reads one keyset page, see `services/keyset.py`) and returns `pager.send(paged)`: the rows as the JSON array they
always were, with the next page's cursor in the `X-Next-Cursor` header and an RFC 8288 `Link: <…>; rel="next"`
header (both absent on the last page). A cursor is opaque to clients: the key of the page's last row and a tag of
the list it belongs to, base64url-encoded JSON; a cursor of another list or one that does not decode is a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, TypeVar

from fastapi import Query, Request, Response

from ..errors import Invalid
from ..services.json_pages import JsonPage
from ..services.keyset import DEFAULT_LIMIT, MAX_LIMIT, BadCursor, Page, Paged

__all__ = ["MAX_CURSOR", "PAGED", "Pager", "decode_cursor", "encode_cursor", "pager"]

T = TypeVar("T")
MAX_CURSOR = 2048

LIMIT_DOC = f"How many rows this page holds: 1-{MAX_LIMIT}, default {DEFAULT_LIMIT}"
CURSOR_DOC = "Where the page starts: the X-Next-Cursor header of the previous page (omit for the first page)"

# The 200 answer of every list route documents its paging headers (FastAPI merges this with the response model).
PAGED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page of the list (a JSON array); the headers say where the next page starts",
        "headers": {
            "X-Next-Cursor": {
                "description": "The cursor of the next page (pass it as `?cursor=`); absent on the last page",
                "schema": {"type": "string"},
            },
            "Link": {
                "description": 'RFC 8288 `<url>; rel="next"`: this request with the next page\'s cursor; absent on the last page',
                "schema": {"type": "string"},
            },
        },
    }
}


def _tag(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:12]


def encode_cursor(scope: str, key: tuple[Any, ...]) -> str:
    """The opaque cursor of the row with `key` in the list at `scope` (its URL path)."""
    raw = json.dumps([_tag(scope), *key], separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(scope: str, cursor: str) -> tuple[Any, ...]:
    """The key a cursor of the list at `scope` carries; BadCursor if it is malformed or another list's."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadCursor("it does not decode") from exc
    if not isinstance(data, list) or len(data) < 2:
        raise BadCursor("it does not decode")
    if data[0] != _tag(scope):
        raise BadCursor("it belongs to another list")
    return tuple(data[1:])


class Pager:
    """The page a request asks for, and the headers that lead to the next one."""

    def __init__(self, request: Request, response: Response, page: Page) -> None:
        self.request = request
        self.response = response
        self.page = page

    def send(self, paged: Paged[T]) -> list[T]:
        self.response.headers.update(self._next(paged.next))
        return paged.items

    def send_json(self, page: JsonPage) -> Response:
        """A page the service wrote as JSON (`services/json_pages.py`), sent as it is with the paging headers."""
        return Response(page.body, media_type="application/json", headers=self._next(page.next))

    def _next(self, key: tuple[Any, ...] | None) -> dict[str, str]:
        if key is None:
            return {}
        cursor = encode_cursor(self.request.url.path, key)
        url = self.request.url.include_query_params(cursor=cursor)
        return {"X-Next-Cursor": cursor, "Link": f'<{url.path}?{url.query}>; rel="next"'}


async def pager(
    request: Request,
    response: Response,
    limit: int = Query(DEFAULT_LIMIT, description=LIMIT_DOC, json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT}),
    cursor: str | None = Query(None, min_length=1, max_length=MAX_CURSOR, description=CURSOR_DOC),
) -> Pager:
    """The dependency of every list route: `?limit=` (1-1000, default 100) and `?cursor=` (a coroutine: no thread)."""
    if not 1 <= limit <= MAX_LIMIT:  # checked here, not by the validator, so that the message gives the range
        raise Invalid(f"limit must be 1-{MAX_LIMIT} (default {DEFAULT_LIMIT}), not {limit}; read more rows page by page")
    after = decode_cursor(request.url.path, cursor) if cursor is not None else None
    return Pager(request, response, Page(limit, after))
