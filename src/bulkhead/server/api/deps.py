"""Shared request plumbing: the service container and the caller's principal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from ..asgi import bearer_token
from ..db import Database
from ..delivery.counters import ByteCounter
from ..pollcache import Answer
from ..services.app_sboms import AppSbomService
from ..services.apps import AppService
from ..services.auth import Authenticator, Principal
from ..services.cra_advisories import AdvisoryService
from ..services.cra_cases import CaseService
from ..services.cra_products import ProductService
from ..services.ddi import DdiAuth, DdiService
from ..services.deltas import DeltaService
from ..services.device_commands import CommandService
from ..services.device_metrics import MetricsService
from ..services.devices import DeviceService
from ..services.groups import GroupService
from ..services.notifications import NotificationService
from ..services.oidc import OidcService
from ..services.overlay import OverlayService
from ..services.releases import ReleaseService, Upload
from ..services.remote_sessions import RemoteSessionService
from ..services.reports import ReportService
from ..services.rollouts import RolloutService
from ..services.security import SecurityService
from ..services.tenants import TenantService
from ..services.ui_accounts import AccountService
from ..services.vulns import VulnService
from ..settings import Settings
from ..store import ArtifactStore
from ..tunnel import TunnelHub

__all__ = ["Services", "answer_response", "principal", "receive_upload", "services"]


@dataclass
class Services:
    settings: Settings
    db: Database
    store: ArtifactStore
    auth: Authenticator
    tenants: TenantService
    releases: ReleaseService
    devices: DeviceService
    secret: bytes
    apps: AppService
    reports: ReportService
    rollouts: RolloutService
    ddi: DdiService
    ddi_auth: DdiAuth
    deltas: DeltaService
    activity: ByteCounter | None = None
    # The job queue's depth, (pending, scheduled); raises when the queue does not answer (metrics, readiness).
    queue_depth: Callable[[], tuple[int, int]] | None = None
    vulns: VulnService | None = None
    cra_products: ProductService | None = None
    cra_cases: CaseService | None = None
    app_sboms: AppSbomService | None = None
    notifications: NotificationService | None = None
    security: SecurityService | None = None
    cra_advisories: AdvisoryService | None = None
    accounts: AccountService | None = None  # web UI passwords and sessions
    overlay: OverlayService | None = None  # the package overlay (ADR 9)
    oidc: OidcService | None = None  # web sign-in through the tenant's OpenID Connect provider
    groups: GroupService | None = None  # the server's own keeps the group list's device counts
    commands: CommandService | None = None  # remote commands
    remote_sessions: RemoteSessionService | None = None  # shells and port forwards (ADR 11)
    tunnels: TunnelHub | None = None  # joins their WebSockets
    metrics: MetricsService | None = None  # device metrics and alert rules

    def command_service(self) -> CommandService:
        return self.commands or CommandService(self.db)

    def group_service(self) -> GroupService:
        return self.groups or GroupService(self.db, self.devices.on_change)


# The dependencies below are coroutines: FastAPI runs a plain `def` dependency in a worker thread, and each such hop
# (a thread wake-up and a wait for the GIL, up to its 5 ms switch interval on a busy process) cost a list request
# more than its SQL did. Only a token this process does not know yet goes to a thread for its database lookup.
async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def principal(request: Request) -> Principal:
    svc: Services = request.app.state.services
    token = bearer_token(request.headers.get("authorization", ""))
    known = svc.auth.cached(token)
    return known if known is not None else await run_in_threadpool(svc.auth.resolve, token)


async def receive_upload(request: Request, svc: Services, max_bytes: int) -> Upload:
    """The raw request body, streamed into the store's incoming area while it is hashed (never held in memory)."""
    declared = request.headers.get("content-length")
    size = int(declared) if declared and declared.isascii() and declared.isdigit() else None
    return await Upload.receive(svc.store, request.stream(), max_bytes, size)


def answer_response(answer: Answer, request: Request) -> Response:
    """A poll answer as a FastAPI response: 304 when the client's ETag still matches."""
    if request.headers.get("if-none-match") == answer.etag:
        return Response(status_code=304, headers={"etag": answer.etag})
    return Response(answer.raw, media_type=answer.content_type, headers={"etag": answer.etag})
