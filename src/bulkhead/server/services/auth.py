"""Who is calling: principals, roles, and token resolution (with a short cache for hot paths)."""

from __future__ import annotations

import datetime as dt
import hmac
import time
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..changes import ChangeFeed
from ..db import Database
from ..errors import Forbidden, Unauthorized
from ..models import ApiToken, Device, Tenant, User, utcnow
from ..security import PREFIX_API, PREFIX_DEVICE, PREFIX_SYSTEM, hash_token

__all__ = ["ROLES", "Authenticator", "Principal"]

ROLES = ("viewer", "operator", "admin")
# Users' API tokens are looked up again after this long, so a revoked token (or a removed user) is refused
# by every server process within it; one indexed read per token and half second is cheap.
_CACHE_TTL = 0.5
_DEVICE_CACHE_TTL = 600.0


@dataclass(frozen=True)
class Principal:
    kind: str  # system | user | device
    name: str
    tenant_id: int | None = None
    tenant: str | None = None
    role: str = "viewer"
    device_id: int | None = None
    device_status: str | None = None
    compatible: str | None = None

    def has(self, role: str) -> bool:
        """Whether `require(role)` would pass."""
        return self.kind == "system" or (self.kind == "user" and ROLES.index(self.role) >= ROLES.index(role))

    def require(self, role: str) -> None:
        """Raise Forbidden unless this is a user (or the system) with at least `role`."""
        if self.kind == "system":
            return
        if self.kind != "user":
            raise Forbidden("this endpoint is for users and API tokens, not devices")
        if ROLES.index(self.role) < ROLES.index(role):
            raise Forbidden(f"needs role '{role}' or higher; this token has role '{self.role}'")

    def require_system(self) -> None:
        if self.kind != "system":
            raise Forbidden("only the server administrator token may do this (see admin.token in the data directory)")

    def require_tenant(self) -> int:
        if self.tenant_id is None:
            raise Forbidden("this needs a tenant's token; the administrator token manages tenants only")
        return self.tenant_id


class Authenticator:
    """Resolves bearer tokens to principals; device lookups are cached briefly (no DB on every request)."""

    def __init__(self, db: Database, system_token_hash: str, feed: ChangeFeed | None = None) -> None:
        self.db = db
        self.system_hash = system_token_hash
        self.feed = feed
        self._cache: dict[str, tuple[float, float, Principal]] = {}

    def resolve(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("no credentials: send 'Authorization: Bearer <token>'")
        h = hash_token(token)
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit and hit[0] > now and self._current(hit[1], hit[2]):
            return hit[2]
        principal = self._lookup(token, h)
        self._remember(h, principal, now)
        return principal

    def _remember(self, h: str, principal: Principal, since: float) -> None:
        if len(self._cache) > 200_000:
            self._cache.clear()
        # A device's credential stays cached until the change feed reports a change to the device
        # (reset, disabled, deleted); users' tokens for half a second.
        device = principal.kind == "device" and self.feed is not None
        self._cache[h] = (since + (_DEVICE_CACHE_TTL if device else _CACHE_TTL), since, principal)

    @staticmethod
    def _devices(s: Session, hashes: list[str]) -> dict[str, Principal]:
        """The devices holding these credential hashes (current, or the one before a rotation), by hash."""
        # The columns a principal needs, not whole rows: a device row holds its inventory (tens of KB).
        rows = s.execute(
            select(
                Device.id,
                Device.name,
                Device.status,
                Device.compatible,
                Device.credential_hash,
                Device.previous_credential_hash,
                Tenant.id.label("tenant_id"),
                Tenant.name.label("tenant"),
            )
            .join(Tenant, Tenant.id == Device.tenant_id)
            .where(or_(Device.credential_hash.in_(hashes), Device.previous_credential_hash.in_(hashes)))
        )
        return {
            h: Principal("device", dev.name, dev.tenant_id, dev.tenant, "device", dev.id, dev.status, dev.compatible)
            for h, dev in credential_holders(s, list(rows), set(hashes)).items()
        }

    def cached(self, token: str | None) -> Principal | None:
        """The principal `resolve` would return from its cache, or None where it would read the database.

        A lean async path answers cached callers on the event loop and sends the others to a worker thread.
        """
        if not token:
            return None
        hit = self._cache.get(hash_token(token))
        if hit and hit[0] > time.monotonic() and self._current(hit[1], hit[2]):
            return hit[2]
        return None

    def _current(self, since: float, p: Principal) -> bool:
        if p.kind != "device" or p.device_id is None or self.feed is None:
            return True
        return self.feed.valid(p.tenant_id, p.device_id, since)

    def forget(self) -> None:
        self._cache.clear()

    def _lookup(self, token: str, h: str) -> Principal:
        if token.startswith(PREFIX_SYSTEM):
            if hmac.compare_digest(h, self.system_hash):
                return Principal("system", "admin")
            raise Unauthorized("invalid administrator token")
        with self.db.session() as s:
            if token.startswith(PREFIX_API):
                row = s.execute(
                    select(ApiToken, User, Tenant)
                    .join(User, User.id == ApiToken.user_id)
                    .join(Tenant, Tenant.id == ApiToken.tenant_id)
                    .where(ApiToken.token_hash == h)
                ).first()
                if row is None:
                    raise Unauthorized("unknown API token")
                tok, user, tenant = row
                if tok.revoked:
                    raise Unauthorized("this API token was revoked")
                if tok.expires_at and _aware(tok.expires_at) < utcnow():
                    raise Unauthorized("this API token has expired; create a new one")
                return Principal("user", f"{user.name} (token {tok.name})", tenant.id, tenant.name, user.role)
            if token.startswith(PREFIX_DEVICE):
                found = self._devices(s, [h])
                if h not in found:
                    raise Unauthorized("unknown device credential: enroll again")
                return found[h]
        raise Unauthorized("unrecognised token format")


class _Holder(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def credential_hash(self) -> str | None: ...
    @property
    def previous_credential_hash(self) -> str | None: ...


H = TypeVar("H", bound=_Holder)


def credential_holders(s: Session, rows: list[H], wanted: set[str]) -> dict[str, H]:
    """The device rows by the credential hashes of `wanted` they hold: the current credential, or the one before a
    rotation (which the device may use until it first uses the new one). A device that used its new credential
    ends the one before, once, through the ORM: the change feed tells every process to stop accepting it."""
    found: dict[str, H] = {}
    for dev in rows:
        if dev.credential_hash in wanted:
            found[dev.credential_hash] = dev
            if dev.previous_credential_hash is not None:
                held = s.get(Device, dev.id)
                if held is not None:
                    held.previous_credential_hash = None
        if dev.previous_credential_hash in wanted:
            found.setdefault(dev.previous_credential_hash, dev)
    return found


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
