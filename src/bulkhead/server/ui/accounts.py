"""The web UI's account pages: sign in (rate limited), sign out, change one's password; admins manage users."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..api.deps import Services, services
from ..authlimit import AuthFailures
from ..errors import Invalid, Unauthorized
from ..services.auth import ROLES
from ..services.keyset import MAX_LIMIT, Page
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
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=safe_next(next), error=None, tenant="", user="")


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
            request, "login.html", 429, next=target, tenant=tenant, user=user,
            error=f"too many failed sign-ins: wait {wait} s and try again",
        )  # fmt: skip
        page.headers["retry-after"] = str(wait)
        return page
    try:
        token = accounts(svc).login(tenant, user, password)
    except Unauthorized as exc:
        limits.failed(account)
        return render(request, "login.html", 401, next=target, tenant=tenant, user=user, error=exc.message)
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
    return render(request, "users.html", me=me, users=users, roles=ROLES, min_password=MIN_PASSWORD, notice=None)


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
