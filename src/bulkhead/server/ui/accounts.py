"""The web UI's account pages: sign in (rate limited), sign out, change one's password; admins manage users."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from ..api.deps import Services, services
from ..authlimit import AuthFailures
from ..errors import Invalid, ServerError, Unauthorized
from ..services.auth import ROLES
from ..services.keyset import MAX_LIMIT, Page
from ..services.oidc import PENDING_SECONDS, OidcService, Pending
from ..services.ui_accounts import MIN_PASSWORD, SignedIn, check_password
from .routing import UiRoute
from .web import (
    COOKIE,
    PREFIX,
    accounts,
    back,
    form,
    render,
    require_same_site,
    require_write,
    safe_next,
    secure_request,
    set_session_cookie,
    signed_in,
)

__all__ = ["LoginLimits", "router"]

router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)


class LoginLimits:
    """Failed sign-ins per account (tenant/user), in the API's AuthFailures table: guesses spread over many addresses
    do not help against one account. Per client address every 401, this page's too, already counts in edge.Edge."""

    def __init__(self, limit: int = 10, window: float = 900.0) -> None:
        self.by_account = AuthFailures(limit, window)

    def retry_after(self, account: str) -> int:
        return self.by_account.retry_after(account)

    def failed(self, account: str) -> None:
        self.by_account.failed(account)


def _limits(request: Request) -> LoginLimits:
    limits: LoginLimits = request.app.state.ui_login_limits
    return limits


@router.get("/login")
def login_page(
    request: Request,
    next: str | None = Query(None, max_length=512),
    tenant: str = Query("", max_length=64),
    svc: Services = Depends(services),
) -> Response:
    """The sign-in form; with `?tenant=`, also the tenant's single sign-on when it has an identity provider."""
    sso = bool(tenant) and svc.oidc is not None and svc.oidc.offered(tenant)
    return render(request, "login.html", next=safe_next(next), error=None, tenant=tenant, user="", sso=sso)


# -- single sign-on (OpenID Connect, services/oidc.py) ------------------------------------------------------------
PENDING = "bulkhead_oidc"


def _oidc(svc: Services) -> OidcService:
    assert svc.oidc is not None, "the OpenID Connect service is made by create_app"
    return svc.oidc


def _callback(request: Request, svc: Services) -> str:
    return (svc.settings.public_url or str(request.base_url)).rstrip("/") + f"{PREFIX}/oidc/callback"


def _refused(request: Request, exc: ServerError, tenant: str, target: str) -> Response:
    """The sign-in page again, saying why single sign-on did not work (with the error's own status)."""
    return render(request, "login.html", exc.status, next=target, tenant=tenant, user="", sso=False, error=exc.message)


@router.get("/oidc/start")
def oidc_start(
    request: Request,
    tenant: str = Query(..., min_length=1, max_length=64),
    next: str | None = Query(None, max_length=512),
    svc: Services = Depends(services),
) -> Response:
    """Send the browser to the tenant's identity provider, remembering the sign-in in a cookie of its own."""
    try:
        url, pending = _oidc(svc).begin(tenant, _callback(request, svc), safe_next(next))
    except ServerError as exc:
        return render(
            request, "login.html", exc.status, next=safe_next(next), tenant=tenant, user="", sso=False, error=exc.message
        )
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        PENDING, pending.encode(), path=f"{PREFIX}/oidc", httponly=True, samesite="lax", secure=secure_request(request),
        max_age=PENDING_SECONDS,
    )  # fmt: skip
    return response


@router.get("/oidc/callback")
def oidc_callback(request: Request, svc: Services = Depends(services)) -> Response:
    """The provider sent the browser back: check its answer, bind the account, open a session."""
    pending = Pending.decode(request.cookies.get(PENDING))
    params = {k: v[:4096] for k, v in request.query_params.items()}
    try:
        user_id, _name = _oidc(svc).finish(pending, params, _callback(request, svc))
        token = accounts(svc).sign_in_as(user_id, f"oidc {pending.tenant if pending else ''}")
    except ServerError as exc:
        page = _refused(request, exc, pending.tenant if pending else "", PREFIX + "/")
        page.delete_cookie(PENDING, path=f"{PREFIX}/oidc")
        return page
    assert pending is not None  # finish refuses a sign-in without one
    response = back(safe_next(pending.next))
    response.delete_cookie(PENDING, path=f"{PREFIX}/oidc")
    set_session_cookie(response, request, token)
    return response


@router.post("/login")
async def login(request: Request, svc: Services = Depends(services)) -> Response:
    require_same_site(request)  # no signing a browser in to the attacker's account from another site
    fields = await form(request)
    tenant, user, password = fields.get("tenant", ""), fields.get("user", ""), fields.get("password", "")
    target = safe_next(fields.get("next"))
    account = f"{tenant}/{user}"
    limits = _limits(request)
    wait = limits.retry_after(account)
    if wait:
        page = render(
            request, "login.html", 429, next=target, tenant=tenant, user=user, sso=False,
            error=f"too many failed sign-ins: wait {wait} s and try again",
        )  # fmt: skip
        page.headers["retry-after"] = str(wait)
        return page
    try:
        token = accounts(svc).login(tenant, user, password)
    except Unauthorized as exc:
        limits.failed(account)
        return render(request, "login.html", 401, next=target, tenant=tenant, user=user, sso=False, error=exc.message)
    response = back(target)
    set_session_cookie(response, request, token)
    return response


@router.post("/logout")
async def logout(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    require_write(request, me, await form(request))
    accounts(svc).logout(request.cookies.get(COOKIE))
    response = back(f"{PREFIX}/login")
    set_session_cookie(response, request, None)
    return response


@router.get("/account")
def account_page(request: Request, me: SignedIn = Depends(signed_in)) -> Response:
    return render(request, "account.html", me=me, done=False, min_password=MIN_PASSWORD)


@router.post("/account/password")
async def change_password(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    if fields.get("new", "") != fields.get("repeat", ""):
        raise Invalid("the new password and its repetition differ: type them again")
    token = accounts(svc).change_own_password(me, fields.get("current", ""), fields.get("new", ""))
    fresh = accounts(svc).resolve(token)
    response = render(request, "account.html", me=fresh, done=True, min_password=MIN_PASSWORD)
    set_session_cookie(response, request, token)
    return response


# -- users (admins) ---------------------------------------------------------------------------------


@router.get("/users")
def users_page(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    me.principal.require("admin")
    users = svc.tenants.list_users(me.principal, Page(MAX_LIMIT)).items
    sso = _oidc(svc).current(me.principal)
    return render(
        request, "users.html", me=me, users=users, roles=ROLES, min_password=MIN_PASSWORD, notice=None, sso=sso,
        callback=_callback(request, svc),
    )  # fmt: skip


@router.post("/users/oidc")
async def set_oidc(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    """Set the tenant's OpenID Connect provider (admins; the same checks and audit as PUT /api/v1/oidc)."""
    fields = await form(request)
    require_write(request, me, fields)
    body = {k: fields.get(k, "").strip() for k in ("issuer", "client_id", "client_secret", "username_claim")}
    _oidc(svc).configure(me.principal, {**body, "default_role": fields.get("default_role") or None})
    return back(f"{PREFIX}/users")


@router.post("/users/oidc/delete")
async def delete_oidc(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    require_write(request, me, await form(request))
    _oidc(svc).remove(me.principal)
    return back(f"{PREFIX}/users")


@router.post("/users")
async def add_user(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    me.principal.require("admin")
    name, password = fields.get("name", ""), fields.get("password", "")
    if password:
        check_password(password)  # before the user is created: a refused password leaves nothing behind
    svc.tenants.create_user(me.principal, name, fields.get("role", "viewer"))
    if password:
        accounts(svc).set_password(me.principal, name, password)
    return back(f"{PREFIX}/users")


@router.post("/users/{name}/password")
async def reset_password(
    name: str, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    accounts(svc).set_password(me.principal, name, fields.get("password", ""))
    if name == me.user:  # an admin who resets their own password ended their own session too
        return back(f"{PREFIX}/login")
    return back(f"{PREFIX}/users")


@router.post("/users/{name}/delete")
async def remove_user(
    name: str, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    require_write(request, me, await form(request))
    svc.tenants.delete_user(me.principal, name)
    return back(f"{PREFIX}/users")
