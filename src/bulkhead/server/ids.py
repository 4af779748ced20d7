"""Database ids at the API edge: the 64-bit range, a strict ASCII-digit parser, and the path-parameter type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

__all__ = ["MAX_ID", "MAX_INT64", "DbId", "as_id"]

MAX_INT64 = 2**63 - 1  # the largest integer a BIGINT column (sizes, sequence numbers) holds
MAX_ID = 2**31 - 1  # the largest id: primary keys are INTEGER columns, 32 bits on PostgreSQL

# A path parameter that is a database id: 1 … 2^31-1, anything else is a 422 before a query runs.
DbId = Annotated[int, Path(ge=1, le=MAX_ID, description="a database id (1 … 2^31-1)")]


def as_id(ref: str) -> int | None:
    """The id that `ref` names if it is plain ASCII digits within the id range, else None (then it is a name).

    `str.isdigit()` also accepts digits such as '²' or '٣' that int() refuses or reads differently; this does not.
    """
    if not ref or len(ref) > 10 or not ref.isascii() or not ref.isdigit():
        return None
    value = int(ref)
    return value if 1 <= value <= MAX_ID else None
