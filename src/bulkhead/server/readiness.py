"""Readiness: can this process serve? The database answers, the job queue answers, the artifact store takes writes
(the data directory has room; an S3 store's bucket answers a HEAD).

Liveness is `/healthz` (the process answers HTTP); readiness is what a load balancer or an orchestrator should route
by: a server whose database is gone is alive but cannot serve a device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from .db import Database
from .store import MIN_FREE_BYTES, ArtifactStore, check_dir

__all__ = ["MIN_FREE_BYTES", "check"]

log = logging.getLogger("bulkhead.server")


def check(db: Database, store: ArtifactStore | Path, queue: Callable[[], object]) -> dict[str, str]:
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
    checks["store"] = check_dir(store) if isinstance(store, Path) else store.check()
    if checks["store"] != "ok":
        log.warning("readiness: the artifact store: %s", checks["store"])
    return checks
