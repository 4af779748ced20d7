"""The package overlay (ADR 9): management of the tenant's APT repository (/api/v1/overlay/…) and the repository
itself as devices' apt fetches it (/overlay/apt/…, HTTP Basic: device name and credential from apt's auth.conf)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import Field

from ..errors import NotFound, Unauthorized
from ..ids import DbId
from ..services.auth import Principal
from ..services.overlay import RELEASE_FILES, OverlayService
from .deps import Services, principal, receive_upload, services
from .wire import Out

__all__ = ["UPLOAD_PATH", "manage", "repo"]

UPLOAD_PATH = "/api/v1/overlay/packages"
manage = APIRouter(prefix="/api/v1/overlay", tags=["overlay"])
repo = APIRouter(prefix="/overlay/apt", tags=["overlay"], include_in_schema=False)


class OverlayPackageOut(Out):
    """A package in the overlay: one .deb in one suite."""

    id: int
    suite: str
    name: str
    version: str
    architecture: str
    sha256: str
    size: int
    uploaded_by: str
    created_at: str
    fixes: list[str] = Field(
        description="the CVE ids its changelog entry for this version names: each becomes a `fixed` VEX statement "
        "(origin overlay) for this package at this version"
    )


class OverlaySuiteOut(Out):
    """A published suite: its signing key and how long its signed Release is valid."""

    suite: str
    fingerprint: str
    published_at: str
    valid_until: str


class OverlayKeyOut(Out):
    """The tenant's repository signing keys (apt's Signed-By on the devices)."""

    fingerprint: str = Field(description="the current key")
    retiring_fingerprint: str | None = Field(description="during a rotation: the old key, which still signs along")
    rotated_at: str | None = Field(description="when the running rotation began")
    public_key: str = Field(description="armoured public keys: the current one, and the retiring one during a rotation")


_BINARY = {
    "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
}


def _overlay(svc: Services) -> OverlayService:
    if svc.overlay is None:
        raise NotFound("the package overlay is not enabled on this server")
    return svc.overlay


@manage.post(
    "/packages",
    status_code=201,
    response_model=OverlayPackageOut,
    openapi_extra=_BINARY,
)
async def upload_package(
    request: Request,
    suite: str = Query(..., description="the distribution the package is for, such as bookworm or trixie"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Upload a .deb (the raw request body) into a suite; it is checked, stored and the suite is published again."""
    overlay = _overlay(svc)
    who.require("operator")
    who.require_tenant()
    upload = await receive_upload(request, svc, overlay.max_deb_bytes)
    return await run_in_threadpool(overlay.upload, who, suite, upload)


@manage.get("/packages", response_model=list[OverlayPackageOut])
def list_packages(
    suite: str | None = None, name: str | None = None, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    return _overlay(svc).list_packages(who, suite, name)


@manage.delete("/packages/{package_id}", status_code=204)
def remove_package(package_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> None:
    """Remove a package from its suite; the suite is published again without it."""
    _overlay(svc).remove(who, package_id)


@manage.get("/suites", response_model=list[OverlaySuiteOut])
def list_suites(who: Principal = Depends(principal), svc: Services = Depends(services)) -> list[dict[str, Any]]:
    return _overlay(svc).list_suites(who)


@manage.get("/key", response_model=OverlayKeyOut)
def get_key(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """The tenant's repository signing key (made on first use): apt's Signed-By on the devices."""
    return _overlay(svc).key(who)


@manage.post("/key/rotate", response_model=OverlayKeyOut)
def rotate_key(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Begin a key rotation (admins): a new current key; the indexes are signed by it and by the old one, and the
    key devices fetch holds both, so no device stops verifying. 409 while a rotation is running. Audited."""
    return _overlay(svc).rotate_key(who)


@manage.post("/key/finish", response_model=OverlayKeyOut)
def finish_rotation(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Finish the rotation (admins), once the devices have fetched the new key (their agents do on every pass):
    the old key is deleted and the indexes are signed by the new one only. 409 when none is running. Audited."""
    return _overlay(svc).finish_rotation(who)


# -- the repository, for devices ------------------------------------------------------------------------------


def _device(request: Request) -> Principal:
    """The device named by HTTP Basic authentication (its name and its credential, as apt sends them), or by its
    bearer credential (the agent)."""
    svc: Services = request.app.state.services
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":  # the agent itself (it fetches the key with its usual credential)
        try:
            who = svc.auth.resolve(header[7:].strip())
        except Unauthorized as e:
            raise _challenge(e.message) from None
        if who.kind != "device":
            raise _challenge("the overlay is for devices: give a device's credential")
        return who
    if header[:6].lower() != "basic ":
        raise _challenge("no credentials: give apt the device's name and credential in /etc/apt/auth.conf.d/")
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _challenge("malformed Basic credentials") from None
    if not sep:
        raise _challenge("malformed Basic credentials")
    try:
        who = svc.auth.resolve(password)
    except Unauthorized as e:
        raise _challenge(e.message) from None
    if who.kind != "device" or who.name != user:
        raise _challenge("the login must be the device's name and the password its credential")
    return who


def _challenge(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"www-authenticate": 'Basic realm="bulkhead overlay"'})


def _send(svc: Services, sha256: str, media_type: str) -> Response:
    path = svc.store.local_path(sha256)
    headers = {"cache-control": "private, max-age=0"}
    if path is not None:
        return FileResponse(path, media_type=media_type, headers=headers)
    size = svc.store.stat(sha256).size

    def chunks() -> Iterator[bytes]:
        with svc.store.open(sha256) as f:
            while chunk := f.read(1 << 20):
                yield chunk

    return StreamingResponse(chunks(), media_type=media_type, headers={**headers, "content-length": str(size)})


@repo.get("/key.asc")
def device_key(request: Request, svc: Services = Depends(services)) -> Response:
    who = _device(request)
    return Response(_overlay(svc).device_key(who), media_type="application/pgp-keys")


@repo.get("/dists/{suite}/{path:path}")
def dists(suite: str, path: str, request: Request, svc: Services = Depends(services)) -> Response:
    who = _device(request)
    overlay = _overlay(svc)
    if path in RELEASE_FILES:
        return Response(overlay.release_file(who, suite, path), media_type="text/plain; charset=utf-8")
    return _send(svc, overlay.index_file(who, suite, path), "application/octet-stream")


@repo.get("/pool/{prefix}/{sha256}/{filename}")
def pool(prefix: str, sha256: str, filename: str, request: Request, svc: Services = Depends(services)) -> Response:
    who = _device(request)
    if prefix != sha256[:2]:
        raise NotFound(f"pool/{prefix}/{sha256}/{filename} is not in the overlay")
    return _send(svc, _overlay(svc).pool_file(who, sha256, filename), "application/vnd.debian.binary-package")
