"""Who is calling the hawkBit DDI API (TargetToken, GatewayToken, client certificate), with bounded caches.

Everything on a poll's path is cached briefly so that a poll needs no database read, but only after the
caller proved who it is: a request with a wrong GatewayToken, an unknown tenant or an unknown controller
leaves nothing behind, so unauthenticated traffic cannot grow the process (every cache has a size bound
and a time to live as well).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from sqlalchemy import func, select

from ..changes import ChangeFeed
from ..db import Database
from ..errors import Forbidden, Invalid, NotFound, Unauthorized
from ..models import Device, Tenant
from ..security import hash_token
from . import audit
from .auth import Authenticator, Principal
from .device_rows import add_device
from .fleet_names import NAME

__all__ = ["DEVICE_CACHE_ENTRIES", "TENANT_CACHE_ENTRIES", "DdiAuth", "DdiCaller"]

_CACHE_TTL = 10.0  # a tenant's DDI settings (auto-registration, gateway token) may be this old
_DEVICE_CACHE_TTL = 600.0  # with a change feed: until the feed reports a change, at most this long
TENANT_CACHE_ENTRIES = 4096
DEVICE_CACHE_ENTRIES = 100_000  # about 0.5 KiB each


@dataclass(frozen=True)
class DdiCaller:
    tenant_id: int
    device_id: int
    name: str
    compatible: str


@dataclass(frozen=True)
class TenantDdi:
    """What DDI needs of a tenant: a few hundred bytes, not an ORM object with its session state."""

    id: int
    name: str
    ddi: Mapping[str, Any]

    @property
    def gateway_hash(self) -> str | None:
        value = self.ddi.get("gateway_token_hash")
        return str(value) if value else None


def _auth_header(headers: Mapping[str, str]) -> tuple[str, str] | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if not token.strip():
        return None
    return scheme.lower(), token.strip()


class DdiAuth:
    """Resolves a DDI caller; caches what an authenticated caller's next poll needs (bounded, expiring)."""

    def __init__(self, db: Database, auth: Authenticator, cert_header: str | None, feed: ChangeFeed | None = None) -> None:
        self.db, self.auth, self.feed = db, auth, feed
        self.cert_header = cert_header.lower() if cert_header else None
        self._lock = threading.Lock()
        # (tenant name as requested, gateway token hash or "") -> tenant; filled only after a caller authenticated.
        self._tenants: TTLCache[tuple[str, str], TenantDdi] = TTLCache(TENANT_CACHE_ENTRIES, _CACHE_TTL)
        # (tenant id, controller id) -> (valid until, computed at, caller); filled only for active devices.
        self._devices: TTLCache[tuple[int, str], tuple[float, float, DdiCaller]] = TTLCache(
            DEVICE_CACHE_ENTRIES, _DEVICE_CACHE_TTL
        )

    def cache_sizes(self) -> dict[str, int]:
        with self._lock:
            return {"tenants": len(self._tenants), "devices": len(self._devices)}

    # -- tenants ------------------------------------------------------------------------
    def _cached_tenant(self, key: tuple[str, str]) -> TenantDdi | None:
        with self._lock:
            return self._tenants.get(key)

    def _remember_tenant(self, key: tuple[str, str], tenant: TenantDdi) -> None:
        with self._lock:
            self._tenants[key] = tenant

    def _load_tenant(self, name: str, gateway_hash: str | None) -> TenantDdi | None:
        with self.db.session() as s:
            rows = list(s.scalars(select(Tenant).where(func.lower(Tenant.name) == name.lower())))
            if not rows and name.upper() == "DEFAULT":
                # hawkBit's default tenant: the tenant whose gateway token this is, or the only tenant there is.
                everyone = list(s.scalars(select(Tenant)))
                rows = [t for t in everyone if gateway_hash and (t.ddi or {}).get("gateway_token_hash") == gateway_hash]
                if not rows and len(everyone) == 1:
                    rows = everyone
            if not rows:
                return None
            t = rows[0]
            return TenantDdi(t.id, t.name, dict(t.ddi or {}))

    # -- devices ------------------------------------------------------------------------
    def _device(self, tenant: TenantDdi, controller_id: str, may_register: bool) -> DdiCaller:
        key = (tenant.id, controller_id)
        now = time.monotonic()
        with self._lock:
            hit = self._devices.get(key)
        if hit and hit[0] > now and (self.feed is None or self.feed.valid(tenant.id, hit[2].device_id, hit[1])):
            return hit[2]
        with self.db.session() as s:
            dev = s.scalar(select(Device).where(Device.tenant_id == tenant.id, Device.name == controller_id))
            if dev is None:
                if not (may_register and tenant.ddi.get("auto_register")):
                    raise NotFound(f"unknown controller '{controller_id}'; create it or let the tenant auto-register devices")
                if not NAME.match(controller_id):
                    raise Invalid(f"controller id {controller_id!r} is not a valid device name")
                compatible = str(tenant.ddi.get("default_compatible") or "")
                dev = add_device(s, tenant.id, controller_id, compatible, "active", list(tenant.ddi.get("groups") or []))
                s.flush()
                audit.record(s, Principal("device", controller_id, tenant.id), "device.register", controller_id, via="ddi")
            if dev.status != "active":
                raise Forbidden(f"device '{controller_id}' is {dev.status}: an operator must approve it")
            caller = DdiCaller(tenant.id, dev.id, dev.name, dev.compatible)
        # Cached until the change feed reports a change to the device (or its tenant); without a feed, briefly.
        with self._lock:
            self._devices[key] = (now + (_DEVICE_CACHE_TTL if self.feed else _CACHE_TTL), now, caller)
        return caller

    # -- the caller ---------------------------------------------------------------------
    def resolve(self, tenant_name: str, controller_id: str, headers: Mapping[str, str]) -> DdiCaller:
        auth = _auth_header(headers)
        if auth and auth[0] == "targettoken":
            p = self.auth.resolve(auth[1])
            if p.kind != "device" or p.device_id is None:
                raise Unauthorized("a TargetToken must be the device's own credential")
            if p.name != controller_id:
                raise Forbidden(f"this TargetToken belongs to '{p.name}', not '{controller_id}'")
            if (p.tenant or "").lower() != tenant_name.lower() and tenant_name.upper() != "DEFAULT":
                raise Forbidden(f"this TargetToken belongs to another tenant than '{tenant_name}'")
            if p.device_status != "active":
                raise Forbidden(f"device '{p.name}' is {p.device_status}: an operator must approve it")
            return DdiCaller(p.tenant_id or 0, p.device_id, p.name, p.compatible or "")
        if auth and auth[0] == "gatewaytoken":
            h = hash_token(auth[1])
            key = (tenant_name.lower(), h)
            tenant = self._cached_tenant(key) or self._load_tenant(tenant_name, h)
            if tenant is None or tenant.gateway_hash != h:
                raise Unauthorized("unknown GatewayToken for this tenant")
            self._remember_tenant(key, tenant)
            return self._device(tenant, controller_id, may_register=True)
        if self.cert_header and headers.get(self.cert_header):
            if headers[self.cert_header] != controller_id:
                raise Forbidden("the client certificate's CN does not name this controller")
            key = (tenant_name.lower(), "")
            tenant = self._cached_tenant(key) or self._load_tenant(tenant_name, None)
            if tenant is None:
                raise NotFound(f"unknown tenant '{tenant_name}'")
            caller = self._device(tenant, controller_id, may_register=True)
            self._remember_tenant(key, tenant)  # only once the controller is known (or registered) and active
            return caller
        raise Unauthorized("send 'Authorization: TargetToken <device token>' or 'GatewayToken <tenant gateway token>'")
