"""The building blocks of the API's wire models: the base that keeps unknown fields, keys that may be absent,
and how routes document bodies they read themselves or files they answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .contract import inline_defs

__all__ = ["ActionType", "Out", "Role", "Time", "absent", "binary", "json_body"]


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent(description: str, alias: str | None = None) -> Any:
    """A key the service leaves out when it does not apply: optional in the schema, never null on the wire."""
    return Field(None, alias=alias, description=description, json_schema_extra=_drop_default)


Time = Annotated[str, Field(description="ISO 8601 time")]
Role = Literal["viewer", "operator", "admin"]
ActionType = Literal["soft", "forced", "download_only"]


class Out(BaseModel):
    """Base of the wire models: unknown fields are kept."""

    model_config = ConfigDict(extra="allow")


def json_body(model: type[BaseModel], media_type: str = "application/json") -> dict[str, Any]:
    """`openapi_extra` documenting a request body a route reads itself (its parsing gives the precise errors)."""
    return {"requestBody": {"required": True, "content": {media_type: {"schema": inline_defs(model.model_json_schema())}}}}


def binary(*media_types: str, description: str = "The file") -> dict[int | str, dict[str, Any]]:
    """`responses` of a route that answers a file or raw bytes."""
    schema = {"type": "string", "format": "binary"}
    return {200: {"description": description, "content": {m: {"schema": schema} for m in media_types}}}
