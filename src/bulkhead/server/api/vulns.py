"""Management API of vulnerability monitoring: /api/v1/vulnerabilities, /vulnerability-feeds, /vex."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from ..errors import Invalid, NotFound
from ..ids import DbId
from ..services.auth import Principal
from ..services.vuln_exposure import Scope
from ..services.vulns import MAX_FEED_BYTES, VulnService
from . import vuln_schemas as vs
from .deps import Services, principal, receive_upload, services
from .paging import PAGED, Pager, pager

__all__ = ["FEED_IMPORT_PATH", "router"]

router = APIRouter(prefix="/api/v1", tags=["vulnerabilities"])
FEED_IMPORT_PATH = r"/api/v1/vulnerability-feeds/[^/]+/import"


def _vulns(svc: Services) -> VulnService:
    assert svc.vulns is not None, "the server was built without vulnerability monitoring"
    return svc.vulns


@router.get("/vulnerability-feeds", response_model=list[vs.FeedOut])
def list_feeds(who: Principal = Depends(principal), svc: Services = Depends(services)) -> list[dict[str, Any]]:
    """The vulnerability feeds the server keeps (global to the server): freshness, record count, last error."""
    return _vulns(svc).feed_status(who)


@router.post(
    "/vulnerability-feeds/{name}/import",
    response_model=vs.FeedOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def import_feed(
    name: str, request: Request, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Import a feed file brought in by hand (air-gapped sites; the raw body, plain or gzip): checked like a download,
    refused with the reason when it is not that feed (the held copy stays). The server administrator token: the
    feeds serve every tenant."""
    who.require_system()
    vulns = _vulns(svc)
    if vulns.feeds.source(name) is None:  # before the body is stored anywhere
        raise NotFound(f"unknown feed {name!r}; the feeds are {', '.join(vulns.feeds.sources)}")
    if request.headers.get("content-length") == "0":
        raise Invalid("empty upload: send the feed file as the request body")
    upload = await receive_upload(request, svc, MAX_FEED_BYTES)
    try:

        def run() -> Any:
            with upload.local() as path:  # a remote store's copy is fetched in the thread too
                return vulns.import_feed(who, name, path)

        return await run_in_threadpool(run)
    finally:
        upload.discard()


@router.post("/vulnerability-feeds/sync", response_model=list[vs.FeedOut])
async def sync_feeds(who: Principal = Depends(principal), svc: Services = Depends(services)) -> list[dict[str, Any]]:
    """Fetch every fetchable feed now (conditional, resumable); a failing feed keeps its data and says why. When a feed
    matching reads changed, every tenant is re-matched incrementally. The server administrator token."""
    return await run_in_threadpool(_vulns(svc).sync, who, True)


@router.post("/vulnerabilities/scan", response_model=vs.ScanQueued, status_code=202)
async def scan(
    body: vs.ScanIn, response: Response, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Queue a scan of the tenant's releases and device inventories (and the apps they run) against the held feeds;
    it runs as a job. Answers 202 with the queued run and the URL that shows its state; the run is kept. Operators."""
    run = await run_in_threadpool(_vulns(svc).scan, who, body.kind)
    url = f"/api/v1/vulnerabilities/scans/{run['id']}"
    response.headers["location"] = url
    return {**run, "status_url": url}


@router.get("/vulnerabilities/scans/{run_id}", response_model=vs.ScanRunOut)
def get_scan(run_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """One scan run: queued, running, done (with its counts and the feed versions it read) or failed (with why)."""
    return _vulns(svc).run(who, run_id)


@router.get("/vulnerabilities/scans", response_model=list[vs.ScanRunOut], responses=PAGED)
def list_scans(
    pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """The tenant's scan runs, newest first: what was known when."""
    return pg.send(_vulns(svc).runs(who, pg.page))


@router.get("/vulnerability-exposure", response_model=vs.ExposureHistoryOut)
def exposure_history(
    days: int = Query(90, ge=1, le=3650, description="the window: the last N days"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """The fleet's exposure now and after each scan, KEV update and VEX change of the window (a plot over time)."""
    return _vulns(svc).exposure_history(who, days)


@router.get("/vulnerabilities", response_model=list[vs.CveRow], responses=PAGED)
def list_vulnerabilities(
    release: DbId | None = Query(None, description="only this release's findings (from its SBOM)"),
    device: str | None = Query(None, max_length=128, description="only this device's findings (release + reported packages)"),
    group: str | None = Query(None, max_length=128, description="only the findings of this group's devices"),
    kev: bool = Query(False, description="only CVEs in CISA's Known Exploited Vulnerabilities catalogue"),
    min_severity: str | None = Query(None, max_length=16, description="low, medium, high or critical"),
    status: str | None = Query(None, max_length=32, description="affected, fixed, not_affected or under_investigation"),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """One row per CVE in the scope (by CVE id), with its worst status, severity, KEV/EPSS, and affected devices."""
    scope = Scope(release, device, group, kev or None, min_severity, status)
    return pg.send(_vulns(svc).list_cves(who, scope, pg.page))


@router.get("/vulnerabilities/{cve}", response_model=vs.CveDetail)
def show_vulnerability(cve: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """One CVE: findings per release, device findings, fleet exposure (devices, groups, versions), the fix, VEX."""
    return _vulns(svc).show(who, cve)


@router.get("/vulnerabilities/{cve}/devices", response_model=list[vs.ExposedDevice], responses=PAGED)
def exposed_devices(
    cve: str, pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """The devices the CVE affects, by name, a page at a time."""
    return pg.send(_vulns(svc).devices(who, cve, pg.page))


@router.put(
    "/vex",
    response_model=vs.VexOut,
    responses={201: {"model": vs.VexOut, "description": "A new statement (200: an existing one replaced)"}},
)
def set_vex(
    body: vs.VexIn, response: Response, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Set (create or replace) the VEX statement for a product, CVE and optional component; it applies at once to
    every finding of the product's releases and devices. Operators and admins; audited."""
    out, created = _vulns(svc).vex_set(
        who,
        body.compatible,
        body.cve,
        body.component,
        body.status,
        body.justification,
        body.impact_statement,
        body.action_statement,
        body.component_version,
        body.purl,
    )
    response.status_code = 201 if created else 200
    return out


@router.post("/vex/import", response_model=list[vs.VexOut])
def import_vex(
    body: dict[str, Any] = Body(
        ...,
        description="An OpenVEX document (0.2.0; 0.0.x statements are read too) or a CycloneDX 1.4-1.6 JSON document "
        "with vulnerabilities[].analysis (CycloneDX VEX)",
    ),
    compatible: str | None = Query(
        None, max_length=256, description="the product every statement is for (default: as the document names it)"
    ),
    format: vs.VexFormat | None = Query(None, description="openvex or cyclonedx (default: detected from the document)"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """Set every statement of an OpenVEX or CycloneDX VEX document (all or none: a statement that cannot be taken is
    named in the 400 and nothing changes). Subcomponents (OpenVEX) and nested components (CycloneDX) become
    component statements for the version they name. Operators and admins; audited."""
    return _vulns(svc).vex_import(who, body, compatible, format)


@router.get("/vex", response_model=list[vs.VexOut], responses=PAGED)
def list_vex(
    compatible: str | None = Query(None, max_length=256),
    cve: str | None = Query(None, max_length=64),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """The tenant's VEX statements by id."""
    return pg.send(_vulns(svc).vex_list(who, compatible, cve, pg.page))


@router.get("/vex/export", response_model=vs.VexDocumentOut, response_model_exclude_unset=True)
def export_vex(
    compatible: str | None = Query(None, max_length=256, description="only this product's statements"),
    format: vs.VexFormat = Query("openvex", description="openvex (OpenVEX 0.2.0) or cyclonedx (CycloneDX 1.6 VEX)"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """The statements as one OpenVEX 0.2.0 or CycloneDX 1.6 VEX JSON document. Audited (`vex.export`)."""
    return _vulns(svc).vex_export(who, compatible, format)


@router.delete("/vex/{vex_id}", status_code=204)
def delete_vex(vex_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> None:
    """Withdraw a VEX statement: its findings show the matcher's status again. Operators and admins; audited."""
    _vulns(svc).vex_delete(who, vex_id)
