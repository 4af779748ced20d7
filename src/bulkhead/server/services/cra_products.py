"""CRA products: per compatible a name, manufacturer and support end; support warnings; deployed releases retained.

Viewers read, operators set (audited as `cra.product.set`). A release of a product that was ever deployed (a device
reported running it or an update to it, or a rollout targeted it) cannot be deleted until its retention ends
(`retention_years` after its last deployment or the product's support end, whichever is later). Releases of a
compatible without a product are not retained: registering the product is what puts it under the CRA's duties here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, union_all
from sqlalchemy.orm import Session

from bulkhead.cra.support_period import retained_until, support_status

from ..cra_models import CraProduct
from ..db import Database
from ..errors import Conflict, Invalid, NotFound
from ..models import AuditEvent, Device, DeviceEvent, Release, Rollout
from . import audit
from .auth import Principal
from .clock import Clock, system_clock
from .rollout_sql import mark_tenant

__all__ = ["ProductService", "check_retention", "last_deployments"]

MAX_TEXT = 256


def last_deployments(s: Session, tid: int, release_ids: list[int] | None = None) -> dict[int, dt.datetime]:
    """When each release of the tenant was last deployed: the latest of a rollout targeting it (now or, from the audit
    log, one deleted since), a device event about it, and the last contact of a device running it. Releases never
    deployed are absent."""
    R = Release
    rollouts = select(Rollout.release_id.label("rid"), func.max(Rollout.created_at).label("at")).where(
        Rollout.tenant_id == tid, Rollout.release_id.is_not(None)
    )
    events = select(DeviceEvent.release_id.label("rid"), func.max(DeviceEvent.at).label("at")).where(
        DeviceEvent.tenant_id == tid, DeviceEvent.release_id.is_not(None)
    )
    running = (
        select(R.id.label("rid"), func.max(func.coalesce(Device.last_seen, Device.created_at)).label("at"))
        .join(Device, (Device.tenant_id == R.tenant_id) & (Device.compatible == R.compatible) & (Device.os_version == R.version))
        .where(R.tenant_id == tid)
    )
    # A rollout deleted since is still in the audit log (`rollout.create` names the release's version, not its
    # compatible: a version another compatible shares counts too, which keeps more, never less).
    audited = (
        select(R.id.label("rid"), func.max(AuditEvent.at).label("at"))
        .join(
            AuditEvent,
            (AuditEvent.tenant_id == R.tenant_id)
            & (AuditEvent.action == "rollout.create")
            & (AuditEvent.details["release"].as_string() == R.version),
        )
        .where(R.tenant_id == tid)
    )
    if release_ids is not None:
        audited = audited.where(R.id.in_(release_ids))
        rollouts = rollouts.where(Rollout.release_id.in_(release_ids))
        events = events.where(DeviceEvent.release_id.in_(release_ids))
        running = running.where(R.id.in_(release_ids))
    both = union_all(
        rollouts.group_by(Rollout.release_id),
        events.group_by(DeviceEvent.release_id),
        running.group_by(R.id),
        audited.group_by(R.id),
    ).subquery()
    rows = s.execute(select(both.c.rid, func.max(both.c.at)).group_by(both.c.rid)).all()
    return {rid: at for rid, at in rows if rid is not None and at is not None}


def check_retention(s: Session, rel: Release, retention_years: int, now: dt.datetime) -> None:
    """Refuse (409) to delete a deployed release of a registered product before its retention ends."""
    if retention_years <= 0:
        return
    product = s.scalar(select(CraProduct).where(CraProduct.tenant_id == rel.tenant_id, CraProduct.compatible == rel.compatible))
    if product is None:
        return
    last = last_deployments(s, rel.tenant_id, [rel.id]).get(rel.id)
    if last is None:
        return
    until = retained_until(last, product.support_end, retention_years)
    if now < until:
        raise Conflict(
            f"release {rel.version} of product {product.name!r} was deployed (last on {last.date().isoformat()}) and is "
            f"retained until {until.date().isoformat()} as CRA technical documentation "
            f"({retention_years} years after its last deployment or the support end; BULKHEAD_RELEASE_RETENTION_YEARS)"
        )


def _text(value: str, what: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_TEXT or not value.isprintable():
        raise Invalid(f"{what} must be 1-{MAX_TEXT} printable characters")
    return value


class ProductService:
    def __init__(self, db: Database, retention_years: int = 10, warn_days: int = 180, clock: Clock = system_clock) -> None:
        self.db, self.retention_years, self.warn_days, self.clock = db, retention_years, warn_days, clock

    def set(
        self, who: Principal, compatible: str, name: str, manufacturer: str, support_end: dt.date | None
    ) -> tuple[dict[str, Any], bool]:
        """Create or replace the product of a compatible; True when it is new. Audited; devices learn the support end
        at their next poll."""
        who.require("operator")
        tid = who.require_tenant()
        compatible = _text(compatible, "compatible")
        name, manufacturer = _text(name, "name"), _text(manufacturer, "manufacturer")
        if support_end is not None and support_end.year > 2200:
            raise Invalid(f"support end {support_end.isoformat()} is not a plausible date")
        now = self.clock()
        with self.db.session() as s:
            p = s.scalar(select(CraProduct).where(CraProduct.tenant_id == tid, CraProduct.compatible == compatible))
            created = p is None
            if p is None:
                p = CraProduct(tenant_id=tid, compatible=compatible, created_at=now)
                s.add(p)
            before = None if created else p.support_end
            p.name, p.manufacturer, p.support_end, p.updated_at = name, manufacturer, support_end, now
            mark_tenant(s, tid, now)  # devices' state answers carry the support end
            s.flush()
            audit.record(
                s,
                who,
                "cra.product.set",
                compatible,
                name=name,
                manufacturer=manufacturer,
                support_end=support_end.isoformat() if support_end else None,
                support_end_before=before.isoformat() if before else None,
                created=created,
            )
            return self._json(s, p, now, releases=False), created

    def list_products(self, who: Principal, ending_within: int | None = None) -> list[dict[str, Any]]:
        """The tenant's products by compatible; `ending_within` days: only those whose support ends by then (or ended,
        or has no end set)."""
        who.require("viewer")
        tid = who.require_tenant()
        if ending_within is not None and not 0 <= ending_within <= 36500:
            raise Invalid("ending_within must be a number of days from 0 to 36500")
        now = self.clock()
        with self.db.session() as s:
            rows = s.scalars(select(CraProduct).where(CraProduct.tenant_id == tid).order_by(CraProduct.compatible))
            out = [self._json(s, p, now, releases=False) for p in rows]
        if ending_within is not None:
            out = [p for p in out if p["support"]["days_left"] is None or p["support"]["days_left"] <= ending_within]
        return out

    def show(self, who: Principal, compatible: str) -> dict[str, Any]:
        """One product with its support status and its releases (deployed or not, retained until when)."""
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            return self._json(s, self._get(s, tid, compatible), self.clock(), releases=True)

    def device_support(self, tid: int, compatible: str) -> dict[str, Any] | None:
        """What a device of `compatible` shows its user: the product and its support end (None: no product)."""
        with self.db.session() as s:
            p = s.scalar(select(CraProduct).where(CraProduct.tenant_id == tid, CraProduct.compatible == compatible))
            if p is None:
                return None
            return {
                "product": p.name,
                "manufacturer": p.manufacturer,
                "support_end": p.support_end.isoformat() if p.support_end else None,
            }

    def check_delete(self, s: Session, rel: Release) -> None:
        check_retention(s, rel, self.retention_years, self.clock())

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _get(self, s: Session, tid: int, compatible: str) -> CraProduct:
        p = s.scalar(select(CraProduct).where(CraProduct.tenant_id == tid, CraProduct.compatible == compatible))
        if p is None:
            raise NotFound(f"no product for compatible {compatible!r}; create it with 'bulkhead cra product set'")
        return p

    def _json(self, s: Session, p: CraProduct, now: dt.datetime, releases: bool) -> dict[str, Any]:
        st = support_status(p.support_end, now.date(), self.warn_days)
        out: dict[str, Any] = {
            "compatible": p.compatible,
            "name": p.name,
            "manufacturer": p.manufacturer,
            "support_end": p.support_end.isoformat() if p.support_end else None,
            "support": {
                "days_left": st.days_left,
                "ended": st.ended,
                "ending_soon": st.ending_soon,
                "warning_days": self.warn_days,
                "warning": st.warning,
            },
            "created_at": p.created_at.isoformat(),
            "updated_at": p.updated_at.isoformat(),
        }
        if releases:
            rels = list(
                s.execute(
                    select(Release.id, Release.version, Release.created_at)
                    .where(Release.tenant_id == p.tenant_id, Release.compatible == p.compatible)
                    .order_by(Release.id)
                )
            )
            last = last_deployments(s, p.tenant_id, [r.id for r in rels]) if rels else {}
            out["releases"] = [
                {
                    "id": r.id,
                    "version": r.version,
                    "created_at": r.created_at.isoformat(),
                    "last_deployed": last[r.id].isoformat() if r.id in last else None,
                    "retained_until": (
                        retained_until(last[r.id], p.support_end, self.retention_years).isoformat()
                        if r.id in last and self.retention_years > 0
                        else None
                    ),
                }
                for r in rels
            ]
        return out
