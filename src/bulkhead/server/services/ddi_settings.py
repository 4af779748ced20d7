"""Reading a tenant's hawkBit DDI settings (auto-registration, default compatible, whether a gateway token is set).

Writes stay in DdiService.configure; this read changes nothing and records nothing, so a page may show it.
"""

from __future__ import annotations

from typing import Any

from ..db import Database
from ..models import Tenant
from .auth import Principal

__all__ = ["ddi_settings"]


def ddi_settings(db: Database, who: Principal) -> dict[str, Any]:
    """The caller's tenant's DDI settings, never the gateway token's hash: admins only, as configuring them."""
    who.require("admin")
    tid = who.require_tenant()
    with db.session() as s:
        tenant = s.get(Tenant, tid)
        assert tenant is not None
        ddi = dict(tenant.ddi or {})
    return {
        "auto_register": bool(ddi.get("auto_register")),
        "default_compatible": ddi.get("default_compatible"),
        "gateway_token_set": "gateway_token_hash" in ddi,
    }
