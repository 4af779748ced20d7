"""The error contract of the HTTP API: one JSON shape for every error, and the statuses every route may answer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

__all__ = ["ERROR_RESPONSES", "HTTP_ERROR_CODES", "ErrorOut", "document_errors", "inline_defs"]


class ErrorOut(BaseModel):
    """Every error answer: a stable code, a message that says what to do, and the id of the request (in the log too)."""

    error: str = Field(description="a stable code: invalid, unauthorized, forbidden, not_found, conflict, too_large, …")
    message: str = Field(description="what went wrong and what to do about it")
    request_id: str = Field(description="this request's id (also the X-Request-ID header); quote it when asking for help")


# The codes of the errors FastAPI and Starlette raise themselves (unknown route, wrong method, …).
HTTP_ERROR_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}

_WHY = {
    400: "Malformed request: a body that is not acceptable JSON (too deep, NaN, out-of-range numbers, lone surrogates) "
    "or a value the server refuses",
    401: "No credential, or one the server does not know",
    403: "The credential may not do this",
    404: "No such resource (or not visible to the caller)",
    409: "Conflicts with the current state",
    410: "No longer available",
    413: "The request body is larger than this route's limit",
    422: "A parameter or body field fails validation",
    429: "Too many failed authentications from this address; see Retry-After",
    500: "Unexpected server error (logged under the request id)",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut, "description": why} for s, why in _WHY.items()}


def inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` inlined (an OpenAPI operation cannot hold its own `$defs`)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


def document_errors(api: FastAPI) -> None:
    """Document the server's error body on every operation: a `4XX` answer is an `ErrorOut`.

    It replaces FastAPI's own `422` entry, whose `{"detail": [...]}` the server never sends (its validation
    handler answers `{"error": "invalid", "message": ...}`). Done on the generated document (FastAPI's way
    to extend it), so routes added later get it too.
    """
    generate = api.openapi
    error = {
        "description": "Refused; `message` says what to do",
        "content": {"application/json": {"schema": inline_defs(ErrorOut.model_json_schema())}},
    }
    fastapi_422 = "#/components/schemas/HTTPValidationError"

    def openapi() -> dict[str, Any]:
        doc = api.openapi_schema
        if doc is None:
            doc = generate()
            for ops in doc.get("paths", {}).values():
                for op in ops.values():
                    responses = op.setdefault("responses", {})
                    schema = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
                    if schema.get("$ref") == fastapi_422:
                        del responses["422"]
                    responses.setdefault("4XX", error)
                    for code, resp in responses.items():
                        content = resp.get("content") or {}
                        if code[0] in "45" and content and "application/json" not in content:
                            # A route with its own media type (hal+json) still answers errors as plain JSON.
                            resp["content"] = {"application/json": next(iter(content.values()))}
            components = doc.get("components", {}).get("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        return doc

    api.openapi = openapi  # type: ignore[method-assign]
