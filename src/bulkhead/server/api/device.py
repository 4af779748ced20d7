"""Device API (/device/v1): enrollment and the device's own state."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, model_validator

from ..pollcache import ACTION_TTL, IDLE_TTL, Answer
from ..security import sign_url
from ..services.auth import Principal
from ..services.inventory import MAX_INVENTORY_KEYS
from ..services.reports import MAX_EVENTS
from . import schemas, state_schemas
from .deps import Services, answer_response, principal, services
from .fields import Attributes, Compatible, Name

router = APIRouter(prefix="/device/v1", tags=["device"])


class EnrollIn(BaseModel):
    bootstrap_token: Name | None = Field(None, description="the bootstrap token the device was built with")
    name: Name
    compatible: Compatible
    attributes: Attributes = Field(default_factory=dict)
    previous_credential: Name | None = Field(
        None, description="after a factory reset: the credential the device held, which proves it (no bootstrap token needed)"
    )

    @model_validator(mode="after")
    def _one_proof(self) -> EnrollIn:
        if not self.bootstrap_token and not self.previous_credential:
            raise ValueError("give bootstrap_token (or, after a factory reset, previous_credential)")
        return self


@router.post("/enroll", status_code=201, response_model=schemas.DeviceEnrolled, response_model_exclude_unset=True)
def enroll(body: EnrollIn, svc: Services = Depends(services)) -> dict[str, Any]:
    """Exchange a bootstrap token for this device's own credential (shown once); after a factory reset, the
    credential the device held instead."""
    if body.previous_credential:
        return svc.devices.reenroll_proven(body.name, body.previous_credential, body.compatible, body.attributes)
    assert body.bootstrap_token is not None  # _one_proof
    return svc.devices.enroll(body.bootstrap_token, body.name, body.compatible, body.attributes)


class CredentialOut(BaseModel):
    """The device's new credential (shown once); the old one works until the new one is first used."""

    device_id: int
    name: str
    credential: str = Field(
        description="The device's new credential (shown once); the old one works until the new one is first used"
    )
    status: str


@router.post("/credential/rotate", response_model=CredentialOut)
def rotate_credential(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Swap the device's credential (sent as the bearer token) for a new one; its signed URLs are renewed too."""
    return svc.devices.rotate_credential(who)


class ReportIn(BaseModel):
    events: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_EVENTS)
    inventory: dict[str, Any] | None = Field(None, max_length=MAX_INVENTORY_KEYS)


def state_answer(svc: Services, who: Principal, base: str) -> Answer:
    """The device's desired state (release, apps, files), its ETag, and how long it may be reused.

    The ETag covers everything but the signed URL, which is fresh in every computed answer (and a cached
    answer lives at most half the URL's lifetime): a device that gets 403 from an expired URL asks again
    without If-None-Match.
    """
    dev, rel, desired = svc.devices.own_state(who)
    action = desired.pop("action", None)
    delta = desired.pop("delta", None)
    commands = desired.pop("commands", None)
    remote = desired.pop("remote", None)
    release: dict[str, Any] | None = None
    if rel is not None:
        release = {
            "id": rel.id,
            "version": rel.version,
            "compatible": rel.compatible,
            "format": rel.format,  # "swu" is for SWUpdate clients on the DDI API, not for this agent
            "sha256": rel.sha256,
            "size": rel.size,
            "url": f"{base}/device/v1/releases/{rel.id}/bundle",
            # A rollout's action: whether the device may install now (download-only or outside its
            # maintenance window: download, then wait).
            "action": action,
            # how long an application's update lock on the device may delay the install
            "update_lock_max_seconds": svc.settings.update_lock_max_minutes * 60,
        }
        if delta is not None:
            # The smallest artifact for what the device runs: a delta bundle from its OS version (RAUC installs it
            # like the full bundle; the full one stays the fallback when the device's slot does not match).
            release["delta"] = {**delta, "url": f"{base}/device/v1/releases/{rel.id}/deltas/{delta['id']}"}
    if desired.get("packages") and svc.overlay is not None:
        # where apt finds the tenant's overlay (ADR 9); the agent picks its distribution's suite
        desired["overlay"] = {"url": f"{base}/overlay/apt", "key_url": f"{base}/overlay/apt/key.asc", "components": ["main"]}
    body: dict[str, Any] = {
        "device": {"id": dev.id, "name": dev.name, "tags": dev.tags, "groups": dev.groups, "attributes": dev.attributes},
        "desired": {"release": release, **desired},
        "poll_interval": svc.settings.poll_interval,
    }
    if svc.cra_products is not None:
        support = svc.cra_products.device_support(dev.tenant_id, dev.compatible)
        if support is not None:
            body["support"] = support  # the product's support end, for the device's user (CRA)
    if dev.factory_reset_at is not None:
        body["factory_reset"] = {"requested_at": dev.factory_reset_at.isoformat()}  # erase the data partition, enroll again
    if commands:
        body["commands"] = commands  # an administrator's command lines to run (services/device_commands.py)
    if remote is not None:
        body["remote"] = {"tunnel": f"{base}/device/v1/tunnel"}  # remote sessions: hold the control channel (ADR 11)
    if svc.security is not None:
        pending = svc.security.device_answer(dev)
        if pending is not None:
            body["security"] = pending  # its pending security update, for the device's user (CRA)
    etag = '"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32] + '"'
    if release is not None and rel is not None:
        url_ttl = svc.settings.signed_url_ttl
        release["signed_url"] = f"{base}/dl/{rel.sha256}?" + sign_url(
            svc.secret, rel.sha256, dev.id, dev.credential_epoch, url_ttl
        )
        if delta is not None:
            signed = sign_url(svc.secret, delta["sha256"], dev.id, dev.credential_epoch, url_ttl)
            release["delta"]["signed_url"] = f"{base}/dl/{delta['sha256']}?" + signed
    # An open action may depend on the clock (maintenance windows): reuse such answers only briefly.
    timed = action is not None or desired.get("prefetch") or any("action" in a for a in desired["apps"])
    ttl = ACTION_TTL if timed else min(IDLE_TTL, svc.settings.signed_url_ttl / 2)
    return Answer(json.dumps(body).encode(), etag, "application/json", ttl)


@router.get(
    "/state",
    response_model=state_schemas.DeviceState,
    response_model_exclude_unset=True,
    responses={304: {"description": "Not modified: the ETag in If-None-Match still holds"}},
)
def state(request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """The device's desired state (release, apps, files); answers 304 when the ETag still matches.

    Served by the lean poll app (api/polls.py) from memory; this route documents it and serves it without the cache.
    """
    base = svc.settings.public_url or str(request.base_url).rstrip("/")
    return answer_response(state_answer(svc, who, base.rstrip("/")), request)


@router.post("/reports", response_model=schemas.ReportAccepted, response_model_exclude_unset=True)
def report(body: ReportIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """A batch of the agent's events (deduplicated by seq) and, when it changed, its inventory.

    Served by the lean report app (api/reports.py), which writes concurrent reports in one transaction and answers
    each after its commit; this route documents it and serves it one report at a time.
    """
    return svc.reports.ingest(who, body.events, body.inventory)
