"""The web UI's admin pages: API and bootstrap tokens (create, the secret shown once, revoke), the keyring's
certificates, and the hawkBit DDI settings.

Everything goes through TenantService, DeviceService and DdiService (their role checks: admins only for tokens and
DDI settings; and their audit records); every write checks the session's CSRF token first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ..api.deps import Services, services
from ..api.paging import decode_cursor, encode_cursor
from ..errors import Invalid
from ..ids import DbId
from ..services.auth import ROLES
from ..services.ddi_settings import ddi_settings
from ..services.fleet_names import NAME
from ..services.keyset import Page
from ..services.ui_accounts import SignedIn
from .routing import UiRoute
from .web import PREFIX, back, form, render, require_write, signed_in

__all__ = ["certificates", "router"]

router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)
TOKEN_PAGE = 100
_API_SCOPE, _BOOT_SCOPE = "ui-api-tokens", "ui-bootstrap-tokens"


def _name(fields: dict[str, str], what: str) -> str:
    name = fields.get("name", "").strip()
    if not NAME.match(name):
        raise Invalid(f"the {what} name must be 1-128 letters, digits, '.', '_', ':' or '-'")
    return name


def _positive(raw: str, what: str) -> float | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise Invalid(f"{what} must be a number") from exc
    if value <= 0:
        raise Invalid(f"{what} must be positive")
    return value


def _tokens_page(
    request: Request,
    me: SignedIn,
    svc: Services,
    status: int = 200,
    api_cursor: str | None = None,
    boot_cursor: str | None = None,
    **shown: Any,
) -> Response:
    """Both kinds of token, a page of each (TOKEN_PAGE, by id); each list pages on with its own cursor."""
    api_after = decode_cursor(_API_SCOPE, api_cursor) if api_cursor else None
    boot_after = decode_cursor(_BOOT_SCOPE, boot_cursor) if boot_cursor else None
    api_tokens = svc.tenants.list_tokens(me.principal, Page(TOKEN_PAGE, api_after))
    bootstrap = svc.devices.list_bootstrap(me.principal, Page(TOKEN_PAGE, boot_after))
    return render(
        request,
        "tokens.html",
        status,
        me=me,
        api_tokens=api_tokens.items,
        bootstrap=bootstrap.items,
        roles=ROLES,
        api_next=encode_cursor(_API_SCOPE, api_tokens.next) if api_tokens.next else None,
        boot_next=encode_cursor(_BOOT_SCOPE, bootstrap.next) if bootstrap.next else None,
        api_cursor=api_cursor,
        boot_cursor=boot_cursor,
        **shown,
    )


@router.get("/tokens")
def tokens_page(
    request: Request,
    api_cursor: str | None = Query(None, max_length=256),
    boot_cursor: str | None = Query(None, max_length=256),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    return _tokens_page(request, me, svc, api_cursor=api_cursor, boot_cursor=boot_cursor)


@router.post("/tokens/api")
async def api_token_create(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    """Create an API token and answer the page with its secret, once (not a redirect: the secret is never stored)."""
    fields = await form(request)
    require_write(request, me, fields)
    days = _positive(fields.get("expires_in_days", ""), "the expiry in days")
    role = fields.get("role", "").strip() or None
    created = svc.tenants.create_token(
        me.principal, _name(fields, "token"), fields.get("user", "").strip() or None, role, int(days) if days else None
    )
    return _tokens_page(request, me, svc, 201, new_api=created)


@router.post("/tokens/api/{token_id}/revoke")
async def api_token_revoke(
    token_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    svc.tenants.revoke_token(me.principal, token_id)
    return back(f"{PREFIX}/tokens")


@router.post("/tokens/bootstrap")
async def bootstrap_create(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    group = fields.get("group", "").strip() or None
    if group is not None and not NAME.match(group):
        raise Invalid("the group name must be 1-128 letters, digits, '.', '_', ':' or '-'")
    uses = _positive(fields.get("max_uses", ""), "the most uses")
    created = svc.devices.create_bootstrap(
        me.principal,
        _name(fields, "bootstrap token"),
        group,
        _positive(fields.get("expires_in_hours", ""), "the expiry in hours"),
        fields.get("requires_approval") == "on",
        int(uses) if uses else None,
    )
    return _tokens_page(request, me, svc, 201, new_bootstrap=created)


@router.post("/tokens/bootstrap/{token_id}/revoke")
async def bootstrap_revoke(
    token_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    svc.devices.revoke_bootstrap(me.principal, token_id)
    return back(f"{PREFIX}/tokens")


def certificates(pem: str | None) -> list[dict[str, str]]:
    """The keyring's certificates: subject, issuer, SHA-256 fingerprint, validity (from the stored PEM)."""
    if not pem:
        return []
    out = []
    for cert in x509.load_pem_x509_certificates(pem.encode()):
        digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()
        out.append(
            {
                "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(),
                "fingerprint": ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "expired": "yes" if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) else "",
            }
        )
    return out


@router.get("/keyring")
def keyring_page(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    """The tenant's signing keyring (every role reads it) and, for admins, the DDI settings."""
    kr = svc.tenants.get_keyring(me.principal)
    ddi = ddi_settings(svc.db, me.principal) if me.principal.role == "admin" else None
    return render(request, "keyring.html", me=me, kr=kr, certs=certificates(kr["pem"]), ddi=ddi, gateway_token=None)


@router.post("/ddi")
async def ddi_configure(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    """Change the DDI settings; a rotated gateway token is shown once, on the page this answers."""
    fields = await form(request)
    require_write(request, me, fields)
    compatible = fields.get("default_compatible", "").strip()
    if len(compatible) > 128:
        raise Invalid("the default compatible is at most 128 characters")
    out = svc.ddi.configure(me.principal, fields.get("auto_register") == "on", compatible or None, fields.get("rotate") == "on")
    kr = svc.tenants.get_keyring(me.principal)
    return render(
        request,
        "keyring.html",
        me=me,
        kr=kr,
        certs=certificates(kr["pem"]),
        ddi=ddi_settings(svc.db, me.principal),
        gateway_token=out.get("gateway_token"),
    )
