"""Shared request plumbing: the service container and the caller's principal."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ..db import Database
from ..delivery.counters import ByteCounter
from ..services.apps import AppService
from ..services.auth import Authenticator, Principal
from ..services.ddi import DdiAuth, DdiService
from ..services.devices import DeviceService
from ..services.releases import ReleaseService
from ..services.reports import ReportService
from ..services.rollouts import RolloutService
from ..services.tenants import TenantService
from ..settings import Settings
from ..store import ArtifactStore

__all__ = ["Services", "principal", "services"]


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
    activity: ByteCounter | None = None


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    svc: Services = request.app.state.services
    return svc.auth.resolve(token)
