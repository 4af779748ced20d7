"""Management API of CSAF advisories (/api/v1/cra/advisories) and of the tenant's CSAF provider (/api/v1/cra/provider)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from bulkhead.cra.csaf_html import advisory_html

from ..ids import DbId
from ..services.auth import Principal
from ..services.cra_advisories import AdvisoryService
from . import advisory_schemas as sch
from .deps import Services, principal, services

__all__ = ["origin", "router"]

router = APIRouter(prefix="/api/v1/cra", tags=["cra"])


def origin(request: Request) -> str:
    """scheme://host[:port] the request came to (the base of URLs when BULKHEAD_PUBLIC_URL is not set)."""
    return str(request.base_url).rstrip("/")


def _adv(svc: Services) -> AdvisoryService:
    assert svc.cra_advisories is not None, "the server was built without CSAF advisories"
    return svc.cra_advisories


@router.post("/advisories", response_model=sch.AdvisoryOut, status_code=201)
def create_advisory(
    body: sch.AdvisoryIn, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """A draft CSAF advisory about CVEs of a product, made from its findings, VEX and fixes. Operators; audited."""
    return _adv(svc).create(who, body.compatible, body.cves, body.title, body.summary, body.cvss, origin(request))


@router.post("/advisories/preview", response_model=sch.CsafDocument)
def preview_advisory(
    body: sch.AdvisoryIn, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The CSAF document such an advisory would have now; nothing is stored."""
    return _adv(svc).preview(who, body.compatible, body.cves, body.title, body.summary, body.cvss, origin(request))


@router.get("/advisories", response_model=list[sch.AdvisoryOut])
def list_advisories(
    state: Literal["draft", "final", "revised"] | None = Query(None, description="only advisories in this state"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """The tenant's advisories, newest first."""
    return _adv(svc).list_advisories(who, state)


@router.get("/advisories/{advisory_id}", response_model=sch.AdvisoryOut)
def show_advisory(
    advisory_id: DbId, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """One advisory; unless it is published and unchanged, with its working document made from the current data."""
    return _adv(svc).show(who, advisory_id, origin(request))


@router.patch("/advisories/{advisory_id}", response_model=sch.AdvisoryOut)
def revise_advisory(
    advisory_id: DbId,
    body: sch.AdvisoryReviseIn,
    request: Request,
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Revise: change title, summary, CVEs or vectors, and say what changed; made again from the current data."""
    return _adv(svc).revise(who, advisory_id, body.model_dump(exclude_unset=True), origin(request))


@router.post("/advisories/{advisory_id}/publish", response_model=sch.PublishOut)
def publish_advisory(
    advisory_id: DbId, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Publish the next version (status final): hashed, signed with the tenant's OpenPGP key, served by the provider."""
    return _adv(svc).publish(who, advisory_id, origin(request))


@router.get(
    "/advisories/{advisory_id}/document",
    response_model=sch.CsafDocument,
    responses={200: {"content": {"text/html": {"schema": {"type": "string", "description": "an HTML page"}}}}},
)
def advisory_document(
    advisory_id: DbId,
    request: Request,
    version: Literal["published", "draft"] = Query("published", description="the published document, or the draft"),
    format: Literal["json", "html"] = Query("json", description="the CSAF JSON, or an HTML page"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> Response:
    """The CSAF document as published (the exact bytes served), or the working draft."""
    meta, data = _adv(svc).document(who, advisory_id, version, origin(request))
    if format == "html":
        import json

        return HTMLResponse(advisory_html(json.loads(data)))
    return Response(
        data, media_type="application/json", headers={"content-disposition": f'attachment; filename="{meta["file"]}"'}
    )


@router.get("/provider", response_model=sch.ProviderOut)
def show_provider(request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """The tenant's CSAF provider: its URLs, publisher, security contact and policy, signing key."""
    return _adv(svc).providers.show_provider(who, origin(request))


@router.patch("/provider", response_model=sch.ProviderOut)
def set_provider(
    body: sch.ProviderIn, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Set the publisher name, namespace, security contact or policy (keys left out stay; null: the default). Admins."""
    return _adv(svc).providers.set_provider(who, body.model_dump(exclude_unset=True), origin(request))


@router.put("/provider/key", response_model=sch.ProviderOut)
def import_key(
    body: sch.KeyIn, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Sign with the tenant's own OpenPGP key from now on (instead of the one generated on first publish). Admins."""
    return _adv(svc).providers.import_key(who, body.secret_key, origin(request))
