"""The web UI's plumbing: templates (autoescaped), the signed-in user from the session cookie, CSRF, forms.

Pages and actions (`pages.py`, `actions.py`, `accounts.py`) use these helpers only; they never touch the
session table or a template environment themselves. See docs/adr/0007-web-ui.md.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ..api.deps import Services
from ..errors import Forbidden, Invalid
from ..services.auth import ROLES
from ..services.ui_accounts import COOKIE, SESSION_HOURS, AccountService, SignedIn, csrf_ok
from .charts import bar_chart

__all__ = [
    "COOKIE",
    "PREFIX",
    "LoginNeeded",
    "accounts",
    "can",
    "form",
    "render",
    "require_same_site",
    "require_write",
    "secure_request",
    "set_session_cookie",
    "signed_in",
]

PREFIX = "/ui"
MAX_FORM = 64 * 1024
HERE = Path(__file__).parent
_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template, whatever its name: a device's name or attribute is text, never markup
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: str | dt.datetime | None) -> str:
    if not value:
        return "never"
    t = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


_env.filters["when"] = _when
_env.filters["size"] = _size
_env.globals["bar_chart"] = bar_chart  # server-side SVG charts (charts.py, templates/bar_chart.html)


class LoginNeeded(Exception):
    """The request has no valid session: pages redirect to the login, htmx requests are told to (HX-Redirect)."""


def accounts(svc: Services) -> AccountService:
    acc = svc.accounts
    assert acc is not None, "the account service is made by create_app"
    return acc


def signed_in(request: Request) -> SignedIn:
    """The signed-in user of this request (a FastAPI dependency); LoginNeeded without a valid session."""
    svc: Services = request.app.state.services
    me = accounts(svc).resolve(request.cookies.get(COOKIE))
    if me is None:
        raise LoginNeeded()
    return me


def can(me: SignedIn, role: str) -> bool:
    return ROLES.index(me.principal.role) >= ROLES.index(role)


def render(request: Request, template: str, status: int = 200, me: SignedIn | None = None, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(
        request=request, me=me, can=(lambda role: me is not None and can(me, role)), prefix=PREFIX, **context
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "cache-control": "no-store",
            # Only this server's scripts and styles, no framing (clickjacking); edge.Edge adds the other security headers.
            "content-security-policy": _CSP,
        },
    )


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form body as {name: last value} (at most 64 KiB; a bigger one is refused)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM:
            raise Invalid(f"the form is larger than {MAX_FORM // 1024} KiB")
        chunks.append(chunk)
    body = b"".join(chunks)
    if body and "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        raise Invalid("send the form as application/x-www-form-urlencoded")
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid("the form does not decode") from exc
    return {k: v[-1] for k, v in parsed.items()}


def require_write(request: Request, me: SignedIn, fields: dict[str, str]) -> None:
    """Refuse a write without this session's CSRF token (form field `csrf` or header X-CSRF-Token), or from another site."""
    require_same_site(request)
    given = fields.get("csrf") or request.headers.get("x-csrf-token")
    if not csrf_ok(me.csrf, given):
        raise Forbidden("the form's CSRF token is missing or out of date: reload the page and send it again")


def require_same_site(request: Request) -> None:
    """Refuse a form a browser sent from a page of another site (its Origin header names another host)."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        # Host names only: a proxy may pass `Host` without the port the browser used (nginx's $host).
        host = urlsplit("//" + request.headers.get("host", "")).hostname
        if urlsplit(origin).hostname != host:
            raise Forbidden("this form was sent from another site: open the page on this server and send it again")


def secure_request(request: Request) -> bool:
    """Whether the browser reached us over TLS (directly, or through a proxy that says so)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_session_cookie(response: Response, request: Request, token: str | None) -> None:
    if token is None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=secure_request(request))
        return
    response.set_cookie(
        COOKIE, token, path="/", httponly=True, samesite="lax", secure=secure_request(request), max_age=int(SESSION_HOURS * 3600)
    )


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def safe_next(target: str | None) -> str:
    """A redirect target after login: a path on this server only (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"
