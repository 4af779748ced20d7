"""The server's error hierarchy; each error carries its HTTP status and a message that says what to do."""

from __future__ import annotations

__all__ = [
    "BadGateway",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "SettingsError",
    "Unauthorized",
]


class ServerError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(ServerError):
    status = 400
    code = "invalid"


class Unauthorized(ServerError):
    status = 401
    code = "unauthorized"


class Forbidden(ServerError):
    status = 403
    code = "forbidden"


class NotFound(ServerError):
    status = 404
    code = "not_found"


class Conflict(ServerError):
    status = 409
    code = "conflict"


class Gone(ServerError):
    status = 410
    code = "gone"


class PayloadTooLarge(ServerError):
    status = 413
    code = "too_large"


class Unprocessable(ServerError):
    status = 422
    code = "rejected"


class BadGateway(ServerError):
    """A server this one depends on (an identity provider) did not answer as it must."""

    status = 502
    code = "upstream"


class SettingsError(ServerError):
    """Settings that cannot work: raised before the server starts."""
