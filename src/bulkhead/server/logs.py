"""Structured logs: one JSON object per line with the request id, for log collectors (BULKHEAD_LOG_FORMAT=json).

The default ("text") leaves logging as the HTTP server sets it up.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from .asgi import REQUEST_ID

__all__ = ["JsonFormatter", "NoQuery", "configure"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """time (ISO 8601 UTC), level, logger, message, request_id, the record's extra fields, and a traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
            "pid": record.process,
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class NoQuery(logging.Filter):
    """Access log lines without the query string: a signed download URL's query is a credential until it
    expires (granian's access log leaves it out; uvicorn's would write it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def configure(fmt: str, level: str = "info") -> None:
    """JSON lines on standard error for the server's loggers (and the HTTP server's, when it logs through Python)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, NoQuery) for f in access.filters):
        access.addFilter(NoQuery())
    if fmt != "json":
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("bulkhead", "uvicorn", "uvicorn.error", "granian", "huey"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
    logging.getLogger("bulkhead").setLevel(level.upper())
