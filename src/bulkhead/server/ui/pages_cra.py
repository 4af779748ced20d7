"""The web UI's vulnerability and CRA pages: findings by CVE, one CVE's exposure, a device's findings and security
events, CRA cases with their Article 14 timers, and CSAF advisories.

Everything goes through VulnService, CaseService and AdvisoryService (their role checks and audit records); the
case actions (confirm awareness, add a note) check the session's CSRF token first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ...cra.article14 import SUBMISSIONS
from ...cra.vex_terms import OPENVEX_JUSTIFICATIONS
from ...cra.vex_terms import STATUSES as VEX_STATUSES
from ..api.deps import Services, services
from ..api.paging import decode_cursor, encode_cursor
from ..errors import Invalid, NotFound
from ..ids import DbId
from ..services import security_events
from ..services.cra_advisories import AdvisoryService
from ..services.cra_cases import CaseService
from ..services.keyset import Page
from ..services.ui_accounts import SignedIn
from ..services.vuln_exposure import Scope
from ..services.vuln_summary import exposure
from ..services.vulns import VulnService
from .plots import exposure_chart
from .routing import UiRoute
from .web import PREFIX, back, form, render, require_write, signed_in

__all__ = ["router", "time_left"]

router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)
CVE_PAGE = 100
CVE_DEVICES = 100
CASE_PAGE = 100
DEVICE_FINDINGS = 50
DEVICE_EVENTS = 20
OVERVIEW_CASES = 50  # the newest cases the overview looks through for open ones
_CLOSED = ("closed", "dismissed")
SEVERITIES = ("low", "medium", "high", "critical")
_CVES_SCOPE = "ui-cves"
_CASES_SCOPE = "ui-cases"
_DEADLINES = (
    ("early_warning", "Early warning (24 h)"),
    ("notification", "Notification (72 h)"),
    ("final_report", "Final report"),
)


def _vulns(svc: Services) -> VulnService:
    if svc.vulns is None:
        raise NotFound("this server runs without vulnerability scanning")
    return svc.vulns


def _cases(svc: Services) -> CaseService:
    if svc.cra_cases is None:
        raise NotFound("this server runs without the CRA duties")
    return svc.cra_cases


def _advisories(svc: Services) -> AdvisoryService:
    if svc.cra_advisories is None:
        raise NotFound("this server runs without CSAF advisories")
    return svc.cra_advisories


def time_left(due: str | None, now: dt.datetime) -> str:
    """'2 d 3 h left' or 'overdue by 5 h' (to the hour; minutes below one hour), '' without a deadline."""
    if not due:
        return ""
    delta = dt.datetime.fromisoformat(due) - now
    seconds = abs(int(delta.total_seconds()))
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    text = f"{days} d {hours} h" if days else (f"{hours} h" if hours else f"{minutes} min")
    return f"{text} left" if delta.total_seconds() >= 0 else f"overdue by {text}"


# The submissions still to make in each state (bulkhead.cra.article14's order); the others are made or moot.
_PENDING = {
    "early_warning_due": ("early_warning", "notification", "final_report"),
    "notification_due": ("notification", "final_report"),
    "final_report_due": ("final_report",),
}


def deadline_rows(case: dict[str, Any], now: dt.datetime) -> list[dict[str, Any]]:
    """A case's deadlines as rows (what, when, time left or 'submitted', overdue), the ones it has only."""
    due, overdue = case.get("deadlines") or {}, set(case.get("overdue") or [])
    pending = _PENDING.get(str(case.get("state")), ())
    return [
        {
            "what": label,
            "at": due[key],
            "done": key not in pending,
            "left": time_left(due[key], now) if key in pending else "submitted or closed",
            "overdue": key in overdue,
        }
        for key, label in _DEADLINES
        if due.get(key)
    ]


@router.get("/overview/security")
def overview_security(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    """The overview's exposure summary and open CRA cases with their time left (an htmx partial)."""
    found = None
    if svc.vulns is not None:
        with svc.db.session() as s:
            found = exposure(s, me.principal)
    open_cases = None
    if svc.cra_cases is not None:
        now = svc.cra_cases.clock()
        recent = svc.cra_cases.list_cases(me.principal, None, Page(OVERVIEW_CASES)).items
        open_cases = [{**c, "due": deadline_rows(c, now)} for c in recent if c["state"] not in _CLOSED]
    return render(request, "overview_security.html", me=me, exposure=found, cases=open_cases)


# -- vulnerabilities ---------------------------------------------------------------------------------------------
@router.get("/vulns")
def vulns_page(
    request: Request,
    severity: str = Query("", max_length=16),
    kev: str = Query("", max_length=8),
    release: str = Query("", max_length=16),
    device: str = Query("", max_length=128),
    cursor: str | None = Query(None, max_length=256),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    """The tenant's findings, one row per CVE, filtered by least severity, KEV, a release or a device."""
    if severity and severity not in SEVERITIES:
        raise Invalid(f"severity must be one of {', '.join(SEVERITIES)}")
    if release and not release.isdigit():
        raise Invalid("the release is its number (see the releases page)")
    scope = Scope(
        release_id=int(release) if release else None,
        device=device or None,
        kev=True if kev else None,
        min_severity=severity or None,
    )
    after = decode_cursor(_CVES_SCOPE, cursor) if cursor else None
    page = _vulns(svc).list_cves(me.principal, scope, Page(CVE_PAGE, after))
    values = {"severity": severity, "kev": kev, "release": release, "device": device}
    next_cursor = encode_cursor(_CVES_SCOPE, page.next) if page.next else None
    return render(
        request,
        "vulns.html",
        me=me,
        cves=page.items,
        filters=values,
        severities=SEVERITIES,
        next_cursor=next_cursor,
        cursor=cursor,
    )


@router.get("/exposure-history")
def exposure_history(
    request: Request,
    days: int = Query(90, ge=1, le=3650),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    """Exposed devices and CVEs affecting devices over the last `days` (an htmx partial)."""
    chart = exposure_chart(_vulns(svc).exposure_history(me.principal, days))
    return render(request, "exposure_history.html", me=me, chart=chart, days=days)


@router.get("/vulns/{cve}")
def cve_page(cve: str, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    """One CVE: severity, KEV/EPSS, findings per release and per device profile, exposure, the fixing releases, VEX
    (operators set and withdraw statements here)."""
    vulns = _vulns(svc)
    info = vulns.show(me.principal, cve)
    devices = vulns.devices(me.principal, cve, Page(CVE_DEVICES))
    products = sorted({str(f["compatible"]) for f in info["device_findings"]} | {str(v["compatible"]) for v in info["vex"]})
    return render(
        request,
        "cve.html",
        me=me,
        v=info,
        devices=devices.items,
        more_devices=devices.next is not None,
        products=products,
        vex_statuses=VEX_STATUSES,
        justifications=OPENVEX_JUSTIFICATIONS,
    )


@router.post("/vulns/{cve}/vex")
async def vex_set(cve: str, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    """Set the VEX statement for a product and this CVE (and a component, if named), as PUT /api/v1/vex does."""
    fields = await form(request)
    require_write(request, me, fields)

    def given(name: str) -> str | None:
        return fields.get(name, "").strip() or None

    compatible = given("compatible")
    if compatible is None:
        raise Invalid("name the product (its compatible) the statement is for")
    out, _ = _vulns(svc).vex_set(
        me.principal,
        compatible,
        cve,
        given("component"),
        fields.get("status", ""),
        given("justification"),
        given("impact_statement"),
        given("action_statement"),
        given("component_version"),
        None,
    )
    return back(f"{PREFIX}/vulns/{out['cve']}")


@router.post("/vulns/{cve}/vex/{vex_id}/withdraw")
async def vex_withdraw(
    cve: str, vex_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    """Withdraw a VEX statement, as DELETE /api/v1/vex/{id} does: its findings show the matcher's status again."""
    fields = await form(request)
    require_write(request, me, fields)
    _vulns(svc).vex_delete(me.principal, vex_id)
    return back(f"{PREFIX}/vulns/{cve}")


@router.get("/devices/{device_id}/findings")
def device_findings(
    device_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    """The device page's findings and security events (an htmx partial, loaded after the page)."""
    dev = svc.devices.show(me.principal, str(device_id))
    cves = _vulns(svc).list_cves(me.principal, Scope(device=dev["name"]), Page(DEVICE_FINDINGS)) if svc.vulns else None
    with svc.db.session() as s:
        events = security_events.page(s, me.principal.require_tenant(), Page(DEVICE_EVENTS), device_id=device_id)
    return render(
        request,
        "device_findings.html",
        me=me,
        dev=dev,
        cves=cves.items if cves else [],
        more_cves=bool(cves and cves.next),
        events=events.items,
    )


# -- CRA cases and advisories ------------------------------------------------------------------------------------
@router.get("/cra/cases")
def cases_page(
    request: Request,
    state: str = Query("", max_length=32),
    cursor: str | None = Query(None, max_length=256),
    me: SignedIn = Depends(signed_in),
    svc: Services = Depends(services),
) -> Response:
    after = decode_cursor(_CASES_SCOPE, cursor) if cursor else None
    cases = _cases(svc)
    page = cases.list_cases(me.principal, state or None, Page(CASE_PAGE, after))
    now = cases.clock()
    rows = [{**c, "due": deadline_rows(c, now)} for c in page.items]
    next_cursor = encode_cursor(_CASES_SCOPE, page.next) if page.next else None
    return render(request, "cases.html", me=me, cases=rows, state=state, next_cursor=next_cursor, cursor=cursor)


@router.get("/cra/cases/{case_id}")
def case_page(case_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    cases = _cases(svc)
    c = cases.show(me.principal, case_id)
    submissions = [e.value for e in SUBMISSIONS if e.value in c["allowed"]]
    return render(request, "case.html", me=me, c=c, due=deadline_rows(c, cases.clock()), submissions=submissions)


@router.post("/cra/cases/{case_id}/{action}")
async def case_action(
    case_id: DbId, action: str, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    fields = await form(request)
    require_write(request, me, fields)
    cases = _cases(svc)
    if action == "confirm":
        raw = fields.get("awareness_at", "").strip()
        try:
            at = dt.datetime.fromisoformat(raw).replace(tzinfo=dt.UTC) if raw else None
        except ValueError as exc:
            raise Invalid("give the awareness time as YYYY-MM-DDTHH:MM (UTC), or leave it empty for the suggested time") from exc
        cases.confirm(me.principal, case_id, at)
    elif action == "note":
        cases.note(me.principal, case_id, fields.get("text", ""))
    elif action == "submit":  # a submission made on the reporting platform, recorded with its reference
        cases.submit(me.principal, case_id, fields.get("submission", ""), fields.get("reference", ""), fields.get("text") or None)
    elif action == "dismiss":
        cases.dismiss(me.principal, case_id, fields.get("reason", ""))
    else:
        raise Invalid(f"unknown case action '{action}': use confirm, note, submit or dismiss")
    return back(f"{PREFIX}/cra/cases/{case_id}")


@router.post("/cra/advisories/{advisory_id}/publish")
async def advisory_publish(
    advisory_id: DbId, request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)
) -> Response:
    """Publish a draft advisory (signed, served by the tenant's CSAF provider), as the API's publish does."""
    fields = await form(request)
    require_write(request, me, fields)
    _advisories(svc).publish(me.principal, advisory_id, str(request.base_url).rstrip("/"))
    return back(f"{PREFIX}/cra/advisories")


@router.get("/cra/advisories")
def advisories_page(request: Request, me: SignedIn = Depends(signed_in), svc: Services = Depends(services)) -> Response:
    """The tenant's CSAF advisories; a published one links to its public page."""
    adv = _advisories(svc)
    items = adv.list_advisories(me.principal)
    base = adv.providers.base(me.principal.tenant or "", str(request.base_url).rstrip("/"))
    return render(request, "advisories.html", me=me, advisories=items, base=base, index=f"{base}/advisories/")
