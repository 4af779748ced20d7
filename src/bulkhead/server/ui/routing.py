"""The web UI's route class: a refused or failed request answers an HTML page (or htmx fragment), never JSON."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.routing import APIRoute

from ..errors import ServerError
from .web import COOKIE, PREFIX, LoginNeeded, accounts, back, render

__all__ = ["UiRoute"]


class UiRoute(APIRoute):
    """Turns LoginNeeded into a redirect to the login page and a service's error into an error page with its status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginNeeded:
                target = f"{PREFIX}/login?next={quote(request.url.path, safe='/')}"
                if request.headers.get("hx-request"):
                    return Response(status_code=401, headers={"hx-redirect": target})
                if request.method != "GET":
                    return render(request, "error.html", 401, message="your session has ended: sign in again")
                return back(target)
            except ServerError as exc:
                svc = request.app.state.services
                me = accounts(svc).resolve(request.cookies.get(COOKIE))
                template = "flash.html" if request.headers.get("hx-request") else "error.html"
                # The real status: base.html tells htmx to swap error answers too (its responseHandling config).
                return render(request, template, exc.status, me=me, message=exc.message, code=exc.code, status_code=exc.status)

        return guarded
