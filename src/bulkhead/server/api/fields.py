"""Bounded field types for the API's pydantic models: every string, list and map the server stores has a limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import Field, StringConstraints

from ..ids import MAX_ID

__all__ = ["MAX_ATTRIBUTES", "Attributes", "BodyId", "Compatible", "LongText", "Name", "Names", "PathName", "Text"]

MAX_ATTRIBUTES = 64

# A name or other short identifier (device, tenant, user, token, group, tag, version, host): the database's 128.
Name = Annotated[str, StringConstraints(max_length=128)]
# A RAUC compatible string (or the SWUpdate hardware a device runs).
Compatible = Annotated[str, StringConstraints(max_length=256)]
# A name in the path that the route may store (a group is created by its first desired state or window).
PathName = Annotated[str, Path(max_length=128)]
# A free text value of moderate size (a password, a description, a source version).
Text = Annotated[str, StringConstraints(max_length=4096)]
# A document carried in JSON (a PEM keyring or key, a compose file).
LongText = Annotated[str, StringConstraints(max_length=1024 * 1024)]
# A database id in a request body.
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]
Names = Annotated[list[Name], Field(max_length=256)]
Attributes = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], Annotated[str, StringConstraints(max_length=1024)]],
    Field(max_length=MAX_ATTRIBUTES),
]
