"""Readiness: can this process serve? The database answers, the job queue answers, the artifact store takes writes.

Liveness is `/healthz` (the process answers HTTP); readiness is what a load balancer or an orchestrator should route
by: a server whose database is gone is alive but cannot serve a device.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from .db import Database

__all__ = ["MIN_FREE_BYTES", "check"]

log = logging.getLogger("bulkhead.server")

MIN_FREE_BYTES = 64 * 1024 * 1024  # below this an upload or a delta build fails half-way


def check(db: Database, store_dir: Path, queue: Callable[[], object]) -> dict[str, str]:
    """Each dependency's state: "ok", or what is wrong (no credentials, no paths: the answer is unauthenticated)."""
    checks: dict[str, str] = {}
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readiness: the database does not answer: %s", exc)
        checks["database"] = f"does not answer ({type(exc).__name__})"
    try:
        queue()
        checks["queue"] = "ok"
    except Exception as exc:
        log.warning("readiness: the job queue does not answer: %s", exc)
        checks["queue"] = f"does not answer ({type(exc).__name__})"
    if not os.access(store_dir, os.W_OK | os.X_OK):
        checks["store"] = "not writable"
    else:
        try:
            free = shutil.disk_usage(store_dir).free
            checks["store"] = "ok" if free >= MIN_FREE_BYTES else f"{free // (1024 * 1024)} MiB free, below 64 MiB"
        except OSError as exc:
            checks["store"] = f"cannot be read ({type(exc).__name__})"
    return checks
