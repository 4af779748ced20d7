"""Assemble the server: settings → database (migrated) → services → ASGI app."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bulkhead import __version__

from .api import ddi, device, management, rollouts
from .api import deltas as deltas_api
from .api.deps import Services
from .api.polls import PollApp
from .api.schemas import Health, document_errors
from .asgi import Receive, Scope, Send
from .changes import ChangeFeed
from .db import Database, migrate
from .delivery.app import DeliveryApp
from .delivery.counters import ByteCounter
from .errors import ServerError
from .jobs import Jobs
from .pollcache import PollCache
from .security import PREFIX_SYSTEM, hash_token, load_secret, new_token
from .services.apps import AppService
from .services.auth import Authenticator
from .services.ddi import DdiAuth, DdiService
from .services.deltas import DeltaService
from .services.devices import DeviceService
from .services.releases import ReleaseService
from .services.reports import ReportService
from .services.rollouts import RolloutService
from .services.tenants import TenantService
from .settings import Settings
from .store import ArtifactStore

__all__ = ["BulkheadApp", "create_app", "system_token"]

log = logging.getLogger("bulkhead.server")


def system_token(data_dir: Path) -> str:
    """The administrator token: BULKHEAD_ADMIN_TOKEN, or `admin.token` created on first start (mode 600)."""
    env = os.environ.get("BULKHEAD_ADMIN_TOKEN")
    if env:
        return env
    path = data_dir / "admin.token"
    if path.exists():
        return path.read_text().strip()
    token, _ = new_token(PREFIX_SYSTEM)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class BulkheadApp:
    """Top-level ASGI app: artifact paths go to the lean delivery app, the rest to FastAPI."""

    def __init__(self, api: FastAPI, delivery: DeliveryApp, polls: PollApp) -> None:
        self.api, self.delivery, self.polls = api, delivery, polls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and DeliveryApp.handles(scope["path"]):
            await self.delivery(scope, receive, send)
        elif scope["type"] == "http" and PollApp.handles(scope):
            await self.polls(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def create_app(settings: Settings) -> BulkheadApp:
    migrate(settings.db_url)
    db = Database(settings.db_url)
    feed = ChangeFeed(db)
    feed.install()
    store = ArtifactStore(settings.artifacts_dir)
    store.clean_incoming()
    secret = load_secret(settings.data_dir)
    auth = Authenticator(db, hash_token(system_token(settings.data_dir)), feed)
    rollout_svc = RolloutService(db)
    releases = ReleaseService(db, store)
    deltas = DeltaService(db, releases, secret, settings.delta_max_ratio, settings.data_dir)
    jobs = Jobs(settings, rollout_svc, deltas)
    svc_devices = DeviceService(db, secret, settings.delta_max_ratio)
    svc_devices.on_change = lambda: jobs.advance(None)
    svc = Services(
        settings,
        db,
        store,
        auth,
        TenantService(db),
        releases,
        svc_devices,
        secret,
        AppService(db, secret),
        ReportService(db, rollout_svc),
        rollout_svc,
        DdiService(db, rollout_svc, settings.poll_interval, settings.delta_max_ratio),
        DdiAuth(db, auth, settings.ddi_cert_header, feed),
        deltas,
    )
    counter = ByteCounter(db, settings.counter_flush_seconds)
    svc.activity = counter

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        counter.start()
        feed.start()
        jobs.start()
        yield
        jobs.stop()
        await feed.stop()
        await counter.stop()
        db.dispose()

    api = FastAPI(
        title="Bulkhead",
        version=__version__,
        lifespan=lifespan,
        description="Management and device API of the Bulkhead update server.",
    )
    api.state.services = svc
    api.include_router(management.router)
    api.include_router(device.router)
    api.include_router(rollouts.router)
    api.include_router(deltas_api.router)
    api.include_router(ddi.manage)
    api.include_router(ddi.router)

    @api.exception_handler(ServerError)
    async def _server_error(_req: Request, exc: ServerError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)

    @api.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": "invalid", "message": f"invalid request: {problems}"}, status_code=422)

    @api.get("/healthz", tags=["meta"], response_model=Health)
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    document_errors(api)

    delivery = DeliveryApp(auth, svc.devices, svc.releases, store, counter, secret, svc.ddi_auth)
    return BulkheadApp(api, delivery, PollApp(svc, PollCache(feed, settings.poll_cache_entries)))


def factory() -> BulkheadApp:
    """Entry for `uvicorn --factory` (several workers): settings come from BULKHEAD_* variables."""
    from .settings import load_settings

    return create_app(load_settings())
