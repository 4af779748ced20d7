"""Management API of the CRA duties: /api/v1/products (support periods) and /api/v1/cra/cases (Article 14)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import HTMLResponse, JSONResponse

from ..ids import DbId
from ..services.auth import Principal
from ..services.cra_cases import CaseService
from ..services.cra_products import ProductService
from . import cra_schemas as cs
from .deps import Services, principal, services
from .paging import PAGED, Pager, pager

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["cra"])


def _products(svc: Services) -> ProductService:
    assert svc.cra_products is not None, "the server was built without the CRA duties"
    return svc.cra_products


def _cases(svc: Services) -> CaseService:
    assert svc.cra_cases is not None, "the server was built without the CRA duties"
    return svc.cra_cases


@router.get("/products", response_model=list[cs.ProductOut])
def list_products(
    ending_within: int | None = Query(None, ge=0, le=36500, description="only products whose support ends within this many days"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """The tenant's products (one per compatible) with their support status."""
    return _products(svc).list_products(who, ending_within)


@router.get("/products/{compatible:path}", response_model=cs.ProductDetail)
def show_product(compatible: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """One product: support status and warning, its releases, when each was last deployed and until when it is kept."""
    return _products(svc).show(who, compatible)


@router.put(
    "/products/{compatible:path}",
    response_model=cs.ProductOut,
    responses={201: {"model": cs.ProductOut, "description": "A new product (200: an existing one replaced)"}},
)
def set_product(
    compatible: str,
    body: cs.ProductIn,
    response: Response,
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Create or replace the product of a compatible. Operators and admins; audited. Devices show the support end."""
    out, created = _products(svc).set(who, compatible, body.name, body.manufacturer, body.support_end)
    response.status_code = 201 if created else 200
    return out


@router.post("/cra/cases", response_model=cs.CaseOut, status_code=201)
def open_case(body: cs.OpenCaseIn, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Open an Article 14 case by hand (an actively exploited vulnerability or a severe incident). Operators."""
    return _cases(svc).open(who, body.kind, body.title, body.cves, body.compatible, body.suggested_awareness_at)


@router.get("/cra/cases", response_model=list[cs.CaseOut], responses=PAGED)
def list_cases(
    state: str | None = Query(None, max_length=24, description="only cases in this state"),
    pg: Pager = Depends(pager),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    """The tenant's cases, newest first, with their deadlines and what is overdue."""
    return pg.send(_cases(svc).list_cases(who, state, pg.page))


@router.get("/cra/cases/{case_id}", response_model=cs.CaseDetail)
def show_case(case_id: DbId, who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """One case: deadlines, log (notes, submissions, CSIRT requests) and the pre-filled reporting fields."""
    return _cases(svc).show(who, case_id)


@router.patch("/cra/cases/{case_id}", response_model=cs.CaseOut)
def update_case(
    case_id: DbId, body: cs.CaseUpdateIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Set the assignee, the mitigations or the title (keys left out stay). Operators; audited."""
    return _cases(svc).update(who, case_id, body.model_dump(exclude_unset=True))


@router.post("/cra/cases/{case_id}/confirm", response_model=cs.CaseOut)
def confirm_case(
    case_id: DbId, body: cs.ConfirmIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Confirm the awareness time (default: the suggested one): the 24 h and 72 h deadlines start. Operators."""
    return _cases(svc).confirm(who, case_id, body.awareness_at)


@router.put("/cra/cases/{case_id}/corrective", response_model=cs.CaseOut)
def set_corrective(
    case_id: DbId, body: cs.CorrectiveIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Name the corrective measure by hand (a fixing release, or a description): the final report's clock."""
    return _cases(svc).set_corrective(who, case_id, body.release_id, body.description, body.available_at)


@router.post("/cra/cases/{case_id}/notes", response_model=cs.CaseEntryOut, status_code=201)
def add_note(
    case_id: DbId, body: cs.NoteIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """A note, or a CSIRT's request (kind csirt_request, with its reference). Operators; audited."""
    return _cases(svc).note(who, case_id, body.text, body.kind, body.reference)


@router.post("/cra/cases/{case_id}/submissions", response_model=cs.SubmitOut, status_code=201)
def submit(
    case_id: DbId, body: cs.SubmitIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Record a submission made on the reporting platform (who, when, its reference, the fields sent). Operators."""
    return _cases(svc).submit(who, case_id, body.submission, body.reference, body.text)


@router.post("/cra/cases/{case_id}/dismiss", response_model=cs.CaseOut)
def dismiss(
    case_id: DbId, body: cs.DismissIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Close a case as not reportable, with the reason. Operators; audited."""
    return _cases(svc).dismiss(who, case_id, body.reason)


@router.get(
    "/cra/cases/{case_id}/submissions/{submission}",
    response_model=cs.SubmissionDoc,
    responses={200: {"content": {"text/html": {"schema": {"type": "string", "description": "a printable HTML page"}}}}},
)
def export_submission(
    case_id: DbId,
    submission: Literal["early_warning", "notification", "final_report"],
    format: Literal["json", "html"] = Query("json", description="json, or a printable HTML page"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> Response:
    """A submission's fields: as submitted (recorded), or as they would be sent now."""
    out = _cases(svc).export(who, case_id, submission, format)
    if isinstance(out, str):
        return HTMLResponse(out)
    return JSONResponse(out)
