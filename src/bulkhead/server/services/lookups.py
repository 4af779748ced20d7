"""The one way to find a tenant's release by id: someone else's release, or one for another compatible, is 404."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ..errors import NotFound
from ..models import Release

__all__ = ["tenant_release"]


def tenant_release(s: Session, tenant_id: int | None, release_id: Any, compatible: str | None = None) -> Release:
    """Tenant `tenant_id`'s release `release_id` (and for `compatible`, when given), or NotFound.

    Another tenant's release answers exactly as a missing one, so ids reveal nothing across tenants.
    """
    rel = s.get(Release, release_id) if isinstance(release_id, int) and not isinstance(release_id, bool) else None
    if rel is None or rel.tenant_id != tenant_id or (compatible is not None and rel.compatible != compatible):
        suffix = " for this device" if compatible is not None else ""
        raise NotFound(f"release {release_id!r} does not exist{suffix}")
    return rel
