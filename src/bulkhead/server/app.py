"""Assemble the server: settings → database (migrated) → services → ASGI app."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from bulkhead import __version__

from .api import accounts as accounts_api
from .api import apps as apps_api
from .api import commands as commands_api
from .api import cra as cra_api
from .api import cra_advisories as cra_advisories_api
from .api import cra_export as cra_export_api
from .api import csaf_public as csaf_public_api
from .api import ddi, device, management, meta, rollouts
from .api import deltas as deltas_api
from .api import groups as groups_api
from .api import metrics as metrics_api
from .api import notifications as notifications_api
from .api import overlay as overlay_api
from .api import remote as remote_api
from .api import security as security_api
from .api import security_events as security_events_api
from .api import vulns as vulns_api
from .api.contract import ERROR_RESPONSES, HTTP_ERROR_CODES, document_errors
from .api.deps import Services
from .api.polls import PollApp
from .api.reports import PATH as REPORTS_PATH
from .api.reports import ReportApp
from .api.schemas import Health
from .asgi import Receive, Scope, Send, error_body
from .authlimit import AuthFailures
from .changes import ChangeFeed
from .db import Database, migrate
from .delivery.app import DeliveryApp
from .delivery.counters import ByteCounter
from .delivery.grants import OffloadGrants
from .delivery.offload import XAccel
from .delivery.offload_log import OffloadLog
from .edge import Edge
from .errors import ServerError, SettingsError
from .heap import Trimmer, limit_arenas, tune_gc
from .job_claims import PeriodicClaims
from .jobs import Jobs
from .limits import BodyLimits, BodyRule
from .logs import configure as configure_logs
from .metrics import observe, start_process
from .openpgp import OpenPgp
from .overlay_keys import RepoPgp
from .pollcache import PollCache
from .security import PREFIX_SYSTEM, hash_token, load_secret, new_token
from .services.alerts import AlertService
from .services.app_sboms import MAX_APP_SBOM_BYTES, AppSbomService
from .services.apps import AppService
from .services.auth import Authenticator
from .services.cra_advisories import AdvisoryService
from .services.cra_cases import CaseService
from .services.cra_products import ProductService
from .services.ddi import DdiAuth, DdiService
from .services.deltas import DeltaService
from .services.device_commands import CommandService
from .services.device_metrics import MetricsService
from .services.devices import DeviceService
from .services.groups import GroupService
from .services.notifications import NotificationService
from .services.notify_send import SmtpConfig
from .services.oidc import OidcService
from .services.overlay import OverlayService
from .services.releases import MAX_SBOM_BYTES, ReleaseService
from .services.remote_sessions import RemoteSessionService
from .services.reports import ReportService
from .services.rollouts import RolloutService
from .services.security import SecurityService
from .services.tenants import TenantService
from .services.ui_accounts import AccountService
from .services.vulns import MAX_FEED_BYTES, VulnService
from .settings import Settings
from .store import FsStore, open_store
from .tunnel import TunnelHub
from .ui import install as install_ui
from .ui.web import MAX_FORM as UI_MAX_FORM
from .vuln_feeds import mirrored

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

    def __init__(self, api: FastAPI, delivery: DeliveryApp, polls: PollApp, reports: ReportApp | None = None) -> None:
        self.api, self.delivery, self.polls, self.reports = api, delivery, polls, reports
        self.front: Any = self.route  # the layers every request passes first (create_app adds them)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.front(scope, receive, send)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        app: Any
        if DeliveryApp.handles(scope["path"]):
            name, app = "delivery", self.delivery
        elif PollApp.handles(scope):
            name, app = "poll", self.polls
        elif self.reports is not None and ReportApp.handles(scope):
            name, app = "reports", self.reports
        else:
            name, app = "api", self.api
        status = 0

        async def counted(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await app(scope, receive, counted)
        finally:
            observe(name, status, time.perf_counter() - started)


def _private_sqlite(db_url: str) -> None:
    """The SQLite database file is readable by the server's user only (created so, or made so)."""
    if not db_url.startswith("sqlite:///"):
        return
    path = Path(db_url.removeprefix("sqlite:///").split("?", 1)[0])
    if not path.name or path.name == ":memory:":
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:
        pass  # the database itself reports what is wrong with the path


_OVERLAY_LIMIT = "BULKHEAD_OVERLAY_MAX_DEB_BYTES"


def body_rules(settings: Settings) -> list[BodyRule]:
    """The routes whose bodies are not plain JSON of at most settings.max_json_bytes."""
    upload = settings.max_upload_bytes
    return [
        BodyRule("POST", re.compile(r"/api/v1/releases"), upload, True, "BULKHEAD_MAX_UPLOAD_BYTES"),
        BodyRule("POST", re.compile(r"/api/v1/releases/[^/]+/deltas"), upload, True, "BULKHEAD_MAX_UPLOAD_BYTES"),
        BodyRule("POST", re.compile(re.escape(overlay_api.UPLOAD_PATH)), settings.overlay_max_deb_bytes, True, _OVERLAY_LIMIT),
        BodyRule("PUT", re.compile(r"/api/v1/releases/[^/]+/sbom"), MAX_SBOM_BYTES, streamed=True),
        BodyRule("PUT", re.compile(r"/api/v1/apps/[^/]+/[^/]+/sbom"), MAX_APP_SBOM_BYTES, streamed=True),
        BodyRule("POST", re.compile(vulns_api.FEED_IMPORT_PATH), MAX_FEED_BYTES, streamed=True),
        # Read, bounded and checked by the report app itself (api/reports.py), which parses the body only once.
        BodyRule("POST", re.compile(re.escape(REPORTS_PATH)), settings.max_json_bytes, True, "BULKHEAD_MAX_JSON_BYTES"),
        # The web UI's release upload: a bundle, streamed into the store as the API's upload is.
        BodyRule("POST", re.compile(r"/ui/releases/upload"), upload, True, "BULKHEAD_MAX_UPLOAD_BYTES"),
        # The web UI's urlencoded forms (not JSON), read and bounded by ui/web.py's `form`.
        BodyRule("POST", re.compile(r"/ui/.*"), UI_MAX_FORM, streamed=True),
        BodyRule(
            "PATCH",
            re.compile(r"/api/v1/(devices|groups)/[^/]+/desired"),
            settings.max_desired_json_bytes,
            setting="BULKHEAD_MAX_DESIRED_JSON_BYTES",
        ),
    ]


def _docs(api: FastAPI) -> None:
    """/docs and /redoc with their scripts and styles served from here (a packaged copy), so they work offline."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    api.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Bulkhead API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @api.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="Bulkhead API",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )


def _smtp(settings: Settings) -> SmtpConfig | None:
    """Where notification e-mails go (BULKHEAD_SMTP_*); None when no SMTP server is set."""
    if not settings.smtp_host:
        return None
    return SmtpConfig(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_user,
        settings.smtp_password,
        settings.smtp_from,
        settings.smtp_starttls,
    )


def create_app(settings: Settings) -> BulkheadApp:
    limit_arenas()  # first: before any thread of this process allocates
    configure_logs(settings.log_format)
    start_process()
    _private_sqlite(settings.db_url)
    if settings.jobs_url is None:
        _private_sqlite(f"sqlite:///{settings.data_dir / 'jobs.db'}")  # the embedded job queue's database
    migrate(settings.db_url)
    db = Database(settings.db_url)
    feed = ChangeFeed(db)
    feed.install()
    store = open_store(settings)
    store.clean_incoming()
    secret = load_secret(settings.data_dir)
    auth = Authenticator(db, hash_token(system_token(settings.data_dir)), feed)
    # The services tell the job queue what to do next through callbacks given to their constructors; the queue
    # is made after them (it runs their work), so the callbacks look it up when they are called.
    jobs: Jobs
    rollout_svc = RolloutService(db, on_change=lambda rid, eta=None: jobs.advance(rid, eta))
    releases = ReleaseService(db, store)
    deltas = DeltaService(
        db, releases, secret, settings.delta_max_ratio, settings.data_dir, enqueue=lambda i: jobs.build_delta(i)
    )
    # Hosts that share the store share the feeds (docs/deployment.md, "Several hosts").
    shared = settings.store == "s3" or settings.store_dir is not None
    vulns = VulnService(db, store, settings.data_dir, mirrored(settings.feed_mirror, settings.osv_ecosystems), shared)
    notifications = NotificationService(db, _smtp(settings), vulns.feeds.status)
    security = SecurityService(
        db,
        settings.security_window_days,
        settings.security_max_postpone_days,
        on_rollout=lambda rid, now: rollout_svc.advance(rid, now),
    )
    overlay = OverlayService(
        db,
        store,
        RepoPgp(settings.data_dir / "openpgp-apt"),
        secret,
        settings.overlay_arches,
        settings.overlay_valid_days,
        settings.overlay_max_deb_bytes,
    )
    remote_sessions = RemoteSessionService(db, store)
    metrics = MetricsService(db, AlertService(db), settings.metrics_raw_hours, settings.metrics_retention_days)
    jobs = Jobs(
        settings,
        rollout_svc,
        deltas,
        vulns,
        notifications,
        security,
        PeriodicClaims(db),
        overlay=overlay,
        metrics=metrics,
        remote_sessions=remote_sessions,
    )
    cra_products = ProductService(db, settings.release_retention_years, settings.support_warning_days)
    releases.before_delete = cra_products.check_delete
    app_sboms = AppSbomService(db, store)
    svc_devices = DeviceService(db, secret, settings.delta_max_ratio, on_change=lambda: jobs.advance(None))
    counter = ByteCounter(db, settings.counter_flush_seconds)
    offload_log = (
        OffloadLog(db, settings.delivery_offload_log, settings.counter_flush_seconds) if settings.delivery_offload_log else None
    )
    grants = None
    if settings.delivery_offload == "x-accel":
        grants = OffloadGrants(db, settings.delivery_offload_grants or settings.data_dir / "offload-grants")
        feed.listen(grants.changed)
    tunnels = TunnelHub(remote_sessions, settings.data_dir / "run", settings.tunnel_relay_host)
    feed.listen(tunnels.changed)
    svc = Services(
        settings,
        db,
        store,
        auth,
        TenantService(db),
        releases,
        svc_devices,
        secret,
        AppService(db, secret, app_sboms),
        ReportService(db, rollout_svc),
        rollout_svc,
        DdiService(db, rollout_svc, settings.poll_interval, settings.delta_max_ratio),
        DdiAuth(db, auth, settings.ddi_cert_header, feed),
        deltas,
        counter,
        jobs.depth,
        vulns,
        cra_products,
        CaseService(db),
        app_sboms,
        notifications,
        security,
        cra_advisories=AdvisoryService(db, OpenPgp(settings.data_dir / "openpgp"), secret, settings),
        accounts=AccountService(db),
        overlay=overlay,
        oidc=OidcService(db, secret),
        groups=GroupService(db, svc_devices.on_change, feed),
        commands=CommandService(db),
        remote_sessions=remote_sessions,
        tunnels=tunnels,
        metrics=metrics,
    )

    trimmer = Trimmer()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        trimmer.start()
        counter.start()
        feed.start()
        jobs.start()
        if offload_log is not None:
            offload_log.start()
        if grants is not None:
            grants.start()
        await tunnels.start()
        yield
        await tunnels.stop()
        if grants is not None:
            await grants.stop()
        if offload_log is not None:
            await offload_log.stop()
        jobs.stop()
        await feed.stop()
        await counter.stop()
        await trimmer.stop()
        db.dispose()

    api = FastAPI(
        title="Bulkhead",
        version=__version__,
        lifespan=lifespan,
        description="Management and device API of the Bulkhead update server.",
        responses=ERROR_RESPONSES,
        docs_url=None,
        redoc_url=None,
    )
    _docs(api)
    api.state.services = svc
    api.include_router(management.router)
    api.include_router(device.router)
    api.include_router(commands_api.router)
    api.include_router(remote_api.router)
    api.include_router(metrics_api.router)
    api.include_router(rollouts.router)
    api.include_router(deltas_api.router)
    api.include_router(ddi.manage)
    api.include_router(ddi.router)
    api.include_router(groups_api.router)
    api.include_router(apps_api.router)
    api.include_router(meta.router)
    api.include_router(vulns_api.router)
    api.include_router(cra_api.router)
    api.include_router(cra_export_api.router)
    api.include_router(notifications_api.router)
    api.include_router(security_api.router)
    api.include_router(security_events_api.router)
    api.include_router(cra_advisories_api.router)
    api.include_router(accounts_api.router)
    api.include_router(overlay_api.manage)
    api.include_router(overlay_api.repo)
    install_ui(api)
    api.include_router(csaf_public_api.router)  # last: its /{tenant}/… paths must not shadow the others

    @api.exception_handler(ServerError)
    async def _server_error(_req: Request, exc: ServerError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

    @api.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(error_body("invalid", f"invalid request: {problems[:2000]}"), status_code=422)

    @api.exception_handler(HTTPException)
    async def _http(_req: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(exc.status_code, "error")
        body = error_body(code, str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @api.exception_handler(Exception)
    async def _unexpected(_req: Request, _exc: Exception) -> JSONResponse:
        # Logged with its request id by edge.Edge, which sees the exception again after this answer.
        body = error_body("internal", "unexpected server error; the operator finds it in the server log under the request id")
        return JSONResponse(body, status_code=500)

    @api.get("/healthz", tags=["meta"], response_model=Health)
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    document_errors(api)

    presign = settings.signed_url_ttl if settings.s3_presign and store.kind == "s3" else None
    offload = None
    if settings.delivery_offload == "x-accel":
        if not isinstance(store, FsStore):
            raise SettingsError(
                "BULKHEAD_DELIVERY_OFFLOAD=x-accel serves files from the filesystem store; with BULKHEAD_STORE=s3 use "
                "BULKHEAD_S3_PRESIGN=1 (devices fetch from the bucket) or unset BULKHEAD_DELIVERY_OFFLOAD"
            )
        offload = XAccel(settings.delivery_offload_prefix, store.root, grants)
        if offload_log is None:
            log.warning("BULKHEAD_DELIVERY_OFFLOAD without BULKHEAD_DELIVERY_OFFLOAD_LOG: bytes nginx sends are not counted")
    delivery = DeliveryApp(auth, svc.devices, svc.releases, store, counter, secret, svc.ddi_auth, presign, offload)
    reports = ReportApp(svc, settings.max_json_bytes)
    app = BulkheadApp(api, delivery, PollApp(svc, PollCache(feed, settings.poll_cache_entries)), reports)
    failures = AuthFailures(settings.auth_fail_limit, settings.auth_fail_window) if settings.auth_fail_limit else None
    api.state.auth_failures = failures  # the WebSockets count theirs too (api/remote.py); Edge sees HTTP only
    app.front = Edge(
        BodyLimits(app.route, body_rules(settings), settings.max_json_bytes, default_setting="BULKHEAD_MAX_JSON_BYTES"), failures
    )
    tune_gc()  # the last step: everything built above is left out of later collections
    return app


def factory() -> BulkheadApp:
    """Entry for `uvicorn --factory` (several workers): settings come from BULKHEAD_* variables."""
    from .settings import load_settings

    return create_app(load_settings())
