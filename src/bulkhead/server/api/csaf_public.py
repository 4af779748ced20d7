"""The public CSAF provider of each tenant (no authentication) and its security.txt and HTML advisory pages.

Every route exists twice: under `/{tenant}` (any server) and at the root, where the Host header names the tenant
(BULKHEAD_CSAF_HOSTS). See docs/cra.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from ..services.csaf_public import PublicFile, PublicProvider
from .cra_advisories import origin
from .deps import Services, services

__all__ = ["router"]

router = APIRouter(tags=["csaf"])

Tenant = Annotated[str, Path(min_length=1, max_length=64, description="the tenant's name")]
Year = Annotated[str, Path(pattern=r"^[0-9]{4}$")]
FileName = Annotated[str, Path(pattern=r"^[+\-a-z0-9_]{1,200}\.json(\.sha256|\.sha512|\.asc)?$")]
Stem = Annotated[str, Path(pattern=r"^[+\-a-z0-9_]{1,200}$")]
Fingerprint = Annotated[str, Path(pattern=r"^[0-9A-Fa-f]{40,64}$")]


def _public(svc: Services) -> PublicProvider:
    assert svc.cra_advisories is not None, "the server was built without CSAF advisories"
    return PublicProvider(svc.cra_advisories)


def _send(f: PublicFile) -> Response:
    # Cached briefly by clients and proxies; a document's bytes never change once published (a revision is a new
    # version at the same URL, so not immutable).
    return Response(f.body, media_type=f.media_type, headers={"cache-control": "public, max-age=300"})


_TEXT = {"type": "string", "description": "the file (see docs/cra.md, CSAF 2.0 section 7, RFC 9116)"}
_JSON: dict[str, dict[str, Any]] = {
    "provider-metadata": {
        "type": "object",
        "description": "CSAF 2.0 provider metadata (provider_json_schema.json)",
        "properties": {"canonical_url": {"type": "string"}, "role": {"type": "string"}, "distributions": {"type": "array"}},
    },
    "document": {
        "type": "object",
        "description": "a CSAF 2.0 document (csaf_json_schema.json)",
        "properties": {"document": {"type": "object"}, "vulnerabilities": {"type": "array"}},
    },
}


def _text(*types: str) -> dict[int | str, dict[str, Any]]:
    """`responses` of a route answering one of `types`; application/json (a CSAF document) or "provider-metadata"."""
    content: dict[str, Any] = {}
    for t in types:
        if t == "provider-metadata":
            content["application/json"] = {"schema": _JSON["provider-metadata"]}
        elif t == "application/json":
            content[t] = {"schema": _JSON["document"]}
        else:
            content[t] = {"schema": _TEXT}
    return {200: {"content": content}}


def _both(path: str, summary: str, types: tuple[str, ...], serve: Callable[..., PublicFile]) -> None:
    """Register `path` at the root (tenant from Host) and under /{tenant}."""

    @router.get(path, summary=f"{summary} (tenant by Host)", response_class=Response, responses=_text(*types))
    def by_host(request: Request, svc: Services = Depends(services)) -> Response:
        p = _public(svc)
        tid = p.tenant_id(None, request.headers.get("host"))
        return _send(serve(p, tid, request, **request.path_params))

    @router.get(f"/{{tenant}}{path}", summary=summary, response_class=Response, responses=_text(*types))
    def by_path(tenant: Tenant, request: Request, svc: Services = Depends(services)) -> Response:
        p = _public(svc)
        tid = p.tenant_id(tenant, None)
        params = {k: v for k, v in request.path_params.items() if k != "tenant"}
        return _send(serve(p, tid, request, **params))

    by_host.__name__ = f"csaf_host_{summary.replace(' ', '_')}"
    by_path.__name__ = f"csaf_tenant_{summary.replace(' ', '_')}"


_both(
    "/.well-known/csaf/provider-metadata.json",
    "provider metadata",
    ("provider-metadata",),
    lambda p, tid, r: p.metadata(tid, origin(r)),
)
_both("/.well-known/csaf/white/index.txt", "index", ("text/plain",), lambda p, tid, r: p.index(tid, origin(r)))
_both("/.well-known/csaf/white/changes.csv", "changes", ("text/csv",), lambda p, tid, r: p.changes(tid, origin(r)))
_both("/.well-known/security.txt", "security txt", ("text/plain",), lambda p, tid, r: p.security_txt(tid, origin(r), _now(r)))
_both("/advisories/", "advisories page", ("text/html",), lambda p, tid, r: p.html_index(tid, origin(r)))


def _now(request: Request) -> Any:
    svc: Services = request.app.state.services
    assert svc.cra_advisories is not None
    return svc.cra_advisories.clock()


def _file(p: PublicProvider, tid: int, r: Request, year: str, name: str) -> PublicFile:
    return p.file(tid, year, name, origin(r))


def _page(p: PublicProvider, tid: int, r: Request, stem: str) -> PublicFile:
    return p.html_page(tid, stem, origin(r))


def _key(p: PublicProvider, tid: int, r: Request, fingerprint: str) -> PublicFile:
    return p.key(tid, fingerprint, origin(r))


# Routes with their own path parameters, validated by FastAPI (typed) before the service sees them.
@router.get(
    "/.well-known/csaf/white/{year}/{name}",
    summary="document, hash or signature (tenant by Host)",
    response_class=Response,
    responses=_text("application/json", "text/plain", "application/pgp-signature"),
)
def host_file(year: Year, name: FileName, request: Request, svc: Services = Depends(services)) -> Response:
    p = _public(svc)
    return _send(_file(p, p.tenant_id(None, request.headers.get("host")), request, year, name))


@router.get(
    "/{tenant}/.well-known/csaf/white/{year}/{name}",
    summary="document, hash or signature",
    response_class=Response,
    responses=_text("application/json", "text/plain", "application/pgp-signature"),
)
def tenant_file(tenant: Tenant, year: Year, name: FileName, request: Request, svc: Services = Depends(services)) -> Response:
    p = _public(svc)
    return _send(_file(p, p.tenant_id(tenant, None), request, year, name))


@router.get(
    "/.well-known/csaf/openpgp/{fingerprint}.asc",
    summary="OpenPGP public key (tenant by Host)",
    response_class=Response,
    responses=_text("application/pgp-keys"),
)
def host_key(fingerprint: Fingerprint, request: Request, svc: Services = Depends(services)) -> Response:
    p = _public(svc)
    return _send(_key(p, p.tenant_id(None, request.headers.get("host")), request, fingerprint))


@router.get(
    "/{tenant}/.well-known/csaf/openpgp/{fingerprint}.asc",
    summary="OpenPGP public key",
    response_class=Response,
    responses=_text("application/pgp-keys"),
)
def tenant_key(tenant: Tenant, fingerprint: Fingerprint, request: Request, svc: Services = Depends(services)) -> Response:
    p = _public(svc)
    return _send(_key(p, p.tenant_id(tenant, None), request, fingerprint))


@router.get(
    "/advisories/{stem}.html", summary="advisory page (tenant by Host)", response_class=Response, responses=_text("text/html")
)
def host_page(stem: Stem, request: Request, svc: Services = Depends(services)) -> Response:
    p = _public(svc)
    return _send(_page(p, p.tenant_id(None, request.headers.get("host")), request, stem))


@router.get("/{tenant}/advisories/{stem}.html", summary="advisory page", response_class=Response, responses=_text("text/html"))
def tenant_page(tenant: Tenant, stem: Stem, request: Request, svc: Services = Depends(services)) -> Response:
    p = _public(svc)
    return _send(_page(p, p.tenant_id(tenant, None), request, stem))
