"""Remote sessions: the tenant's switch (/api/v1/remote-access), sessions (/api/v1/devices/{ref}/sessions,
/api/v1/sessions/{id}), and the WebSockets that carry them (/api/v1/sessions/{id}/connect for the operator,
/device/v1/tunnel and /device/v1/tunnel/{connection} for the device): services/remote_sessions.py, server/tunnel."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, WebSocket
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bulkhead.protocol import DeviceStatus

from ..asgi import bearer_token, error_body
from ..authlimit import AuthFailures
from ..errors import Forbidden, ServerError, Unauthorized
from ..ids import DbId
from ..services.auth import Principal
from ..services.remote_sessions import RemoteSessionService
from ..services.ui_accounts import COOKIE, AccountService
from .deps import Services, principal, services
from .paging import PAGED, Pager, pager
from .stored import stored_response
from .wire import Out, Time, binary

router = APIRouter(tags=["remote sessions"])


class RemoteAccessIn(BaseModel):
    enabled: bool = Field(description="whether operators may open shells and port forwards on the tenant's devices")
    idle_timeout_seconds: int | None = Field(None, ge=5, le=86400, description="a session with no traffic this long is closed")
    record: bool | None = Field(None, description="keep each shell's output (asciicast v2) with its session (absent: unchanged)")


class RemoteAccessOut(Out):
    """The tenant's remote-access switch: whether sessions may be opened, when an idle one is closed, whether shells
    are recorded."""

    enabled: bool
    idle_timeout_seconds: int
    record: bool


class SessionIn(BaseModel):
    kind: Literal["shell", "forward"] = Field(description="a root shell on a terminal, or TCP connections to `target`")
    target: str | None = Field(
        None, max_length=300, description="forward: host:port as the device reaches it (127.0.0.1:8080, a container's address)"
    )


class SessionOut(Out):
    """A remote session: who opened it, when, how long it lasted and what went through it."""

    id: int
    device_id: int
    device: str
    kind: Literal["shell", "forward"]
    target: str | None
    status: Literal["open", "closed"]
    opened_by: str
    opened_at: Time
    closed_at: Time | None
    close_reason: str | None
    duration_seconds: float
    connections: int = Field(description="connections the device joined (a shell has one; a forward one per TCP connection)")
    bytes_to_device: int
    bytes_from_device: int
    recording_bytes: int | None = Field(description="the size of the shell's recording (`GET .../recording`), if one was kept")


def _sessions(svc: Services) -> RemoteSessionService:
    return svc.remote_sessions or RemoteSessionService(svc.db)


@router.get("/api/v1/remote-access", response_model=RemoteAccessOut)
def get_remote_access(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return _sessions(svc).access(who)


@router.put("/api/v1/remote-access", response_model=RemoteAccessOut)
def set_remote_access(
    body: RemoteAccessIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Allow or stop remote sessions for the tenant (administrators; audited). Off closes every open session."""
    return _sessions(svc).configure(who, body.enabled, body.idle_timeout_seconds, body.record)


@router.post("/api/v1/devices/{ref}/sessions", status_code=201, response_model=SessionOut)
def open_session(
    ref: str, body: SessionIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Open a shell or a port forward on the device (operators; audited). Its connections are WebSockets to
    `/api/v1/sessions/{id}/connect`: binary messages are the bytes, text messages JSON control (docs/adr/0011)."""
    return _sessions(svc).open(who, ref, body.kind, body.target)


@router.get("/api/v1/devices/{ref}/sessions", response_model=list[SessionOut], responses=PAGED)
def list_sessions(
    ref: str, pg: Pager = Depends(pager), who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    """The device's remote sessions, newest first."""
    return pg.send(_sessions(svc).list_for_device(who, ref, pg.page))


@router.get("/api/v1/sessions/{session_id}", response_model=SessionOut)
def show_session(session_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    return _sessions(svc).show(who, session_id)


@router.get(
    "/api/v1/sessions/{session_id}/recording",
    response_class=Response,
    responses=binary("application/x-asciicast", description="the shell's output, asciicast v2"),
)
def session_recording(session_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """The shell's recording (its owner and administrators): play it with `asciinema play FILE`."""
    sha256, name = _sessions(svc).recording(who, session_id)
    return stored_response(svc.store, sha256, "application/x-asciicast", name)


@router.delete("/api/v1/sessions/{session_id}", response_model=SessionOut)
def close_session(session_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """End the session: its connections are closed within seconds."""
    return _sessions(svc).close(who, session_id)


# -- the WebSockets ----------------------------------------------------------------------------------------
async def _refuse(ws: WebSocket, status: int, message: str) -> None:
    """Refuse the upgrade itself (an HTTP error, before the socket opens): a client that dials again counts it as a
    failure and backs off. The message goes in a JSON body where the HTTP server can send one (uvicorn), else the
    server answers 403 without it."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse(error_body(_CODES.get(status, "forbidden"), message), status_code=status))
    else:
        await ws.close(1008, message[:120])


_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 429: "too_many_requests"}


async def _caller(ws: WebSocket) -> tuple[Services, Principal | None]:
    """The services and who is calling; a bad credential is refused before the socket opens (None)."""
    svc: Services = ws.app.state.services
    failures: AuthFailures | None = getattr(ws.app.state, "auth_failures", None)
    address = ws.client.host if ws.client else "unknown"
    if failures is not None and (wait := failures.retry_after(address)):
        await _refuse(ws, 429, f"too many failed authentications from {address}; try again in {wait} s")
        return svc, None
    token = bearer_token(ws.headers.get("authorization", ""))
    try:
        who: Principal
        if token is None and ws.cookies.get(COOKIE) and svc.accounts is not None:
            who = await run_in_threadpool(_browser, svc.accounts, ws, svc.settings.public_url)  # the web UI's terminal
        else:
            known = svc.auth.cached(token)
            who = known if known is not None else await run_in_threadpool(svc.auth.resolve, token)
    except ServerError as e:
        if failures is not None and e.status == 401:
            failures.failed(address)
        await _refuse(ws, e.status, e.message)
        return svc, None
    return svc, who


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = parts.port if parts.port not in (None, default) else None
    return f"{parts.scheme}://{(parts.hostname or '').lower()}{f':{port}' if port else ''}"


def _browser(accounts: AccountService, ws: WebSocket, public_url: str | None) -> Principal:
    """The web UI's signed-in user, for a WebSocket a page of this server opened: browsers send the cookie with any
    site's WebSocket, so the Origin (scheme, host and port) must be this server's as the browser reached it, or the
    public URL's."""
    origin = ws.headers.get("origin") or ""
    forwarded = ws.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    scheme = forwarded or ("https" if ws.url.scheme == "wss" else "http")
    own = {_origin_of(f"{scheme}://{ws.headers.get('host', '')}")} | ({_origin_of(public_url)} if public_url else set())
    if not origin or _origin_of(origin) not in own:
        raise Forbidden("this WebSocket was opened from another site: open the terminal from this server's pages")
    me = accounts.resolve(ws.cookies.get(COOKIE))
    if me is None:
        raise Unauthorized("the web UI session has ended: sign in again")
    return me.principal


@router.websocket("/api/v1/sessions/{session_id}/connect")
async def connect_session(ws: WebSocket, session_id: DbId) -> None:
    svc, who = await _caller(ws)
    if who is not None and svc.tunnels is not None:
        await ws.accept()
        await svc.tunnels.operator(who, session_id, ws)


@router.websocket("/device/v1/tunnel")
async def device_control(ws: WebSocket) -> None:
    svc, who = await _caller(ws)
    if who is None or svc.tunnels is None:
        return
    try:
        if who.kind != "device" or who.device_id is None or who.tenant_id is None:
            raise Forbidden("this endpoint is for devices")
        if who.device_status != DeviceStatus.ACTIVE:
            raise Forbidden(f"device '{who.name}' is {who.device_status}: it has no tunnel")
        if not (await run_in_threadpool(_sessions(svc).enabled_for, who.tenant_id)):
            raise Forbidden("remote access is off for this device's tenant")
    except ServerError as e:
        await _refuse(ws, e.status, e.message)
        return
    await ws.accept()
    await svc.tunnels.control(who, ws)


@router.websocket("/device/v1/tunnel/{connection}")
async def device_connection(ws: WebSocket, connection: str) -> None:
    svc, who = await _caller(ws)
    if who is not None and svc.tunnels is not None:
        await ws.accept()
        await svc.tunnels.device(who, connection[:64], ws)
