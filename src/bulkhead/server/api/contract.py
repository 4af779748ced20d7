"""The error contract of the HTTP API: one JSON shape for every error, and the statuses every route may answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ERROR_RESPONSES", "HTTP_ERROR_CODES", "ErrorOut"]


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
