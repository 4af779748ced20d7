"""Management API of the CRA technical documentation export: GET /api/v1/cra/export (Annex VII, one tar.gz)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from ..services.auth import Principal
from ..services.cra_export import export_product
from .deps import Services, principal, services

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["cra"])


@router.get(
    "/cra/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}}},
)
def export_techdoc(
    product: str = Query(..., min_length=1, max_length=256, description="the product's compatible"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> StreamingResponse:
    """One product's technical documentation as a deterministic tar.gz with a manifest.json (operators, admins)."""
    out = export_product(svc.db, svc.store, who, product)
    return StreamingResponse(
        out.chunks,
        media_type="application/gzip",
        headers={"content-disposition": f'attachment; filename="{out.filename}"'},
    )
