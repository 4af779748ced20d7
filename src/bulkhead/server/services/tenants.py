"""Tenants, users, API tokens and keyrings."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bulkhead.rauc import BundleError, load_keyring

from ..db import Database
from ..errors import Conflict, Invalid, NotFound
from ..models import ApiToken, Tenant, User, utcnow
from ..security import PREFIX_API, new_token
from . import audit
from .auth import ROLES, Principal, _aware
from .keyset import Page, Paged, keyset, paged

__all__ = ["TenantService"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise Invalid(f"{what} name {name!r} is invalid: use 1-64 letters, digits, '.', '_' or '-'")


class TenantService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_tenant(self, who: Principal, name: str, admin_user: str = "admin") -> dict[str, Any]:
        who.require_system()
        _check_name(name, "tenant")
        token, h = new_token(PREFIX_API)
        try:
            with self.db.session() as s:
                tenant = Tenant(name=name)
                s.add(tenant)
                s.flush()
                user = User(tenant_id=tenant.id, name=admin_user, role="admin")
                s.add(user)
                s.flush()
                s.add(ApiToken(tenant_id=tenant.id, user_id=user.id, name="initial-admin", token_hash=h))
                audit.record(s, who, "tenant.create", name, tenant.id)
                return {"id": tenant.id, "name": name, "admin_user": admin_user, "token": token}
        except IntegrityError as exc:
            raise Conflict(f"tenant '{name}' already exists") from exc

    def list_tenants(self, who: Principal, page: Page) -> Paged[dict[str, Any]]:
        who.require_system()
        with self.db.session() as s:
            q = select(Tenant.id, Tenant.name, Tenant.keyring_pem.is_not(None).label("keyring"))
            rows = s.execute(keyset(q, [Tenant.id], page)).all()
            return paged(rows, page, lambda t: (t.id,), lambda t: {"id": t.id, "name": t.name, "keyring": bool(t.keyring)})

    def create_user(self, who: Principal, name: str, role: str) -> dict[str, Any]:
        who.require("admin")
        tid = who.require_tenant()
        _check_name(name, "user")
        if role not in ROLES:
            raise Invalid(f"unknown role '{role}': use one of {', '.join(ROLES)}")
        try:
            with self.db.session() as s:
                user = User(tenant_id=tid, name=name, role=role)
                s.add(user)
                s.flush()
                audit.record(s, who, "user.create", name, role=role)
                return {"id": user.id, "name": name, "role": role}
        except IntegrityError as exc:
            raise Conflict(f"user '{name}' already exists in this tenant") from exc

    def list_users(self, who: Principal, page: Page) -> Paged[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            rows = list(s.scalars(keyset(select(User).where(User.tenant_id == tid), [User.id], page)))
            return paged(rows, page, lambda u: (u.id,), lambda u: {"id": u.id, "name": u.name, "role": u.role})

    def create_token(
        self, who: Principal, name: str, user: str | None, role: str | None, expires_in_days: int | None
    ) -> dict[str, Any]:
        """A token for `user` (created with `role` when missing); admins only."""
        who.require("admin")
        tid = who.require_tenant()
        _check_name(name, "token")
        if expires_in_days is not None and expires_in_days <= 0:
            raise Invalid("expires_in_days must be positive")
        if role is not None and role not in ROLES:
            raise Invalid(f"unknown role '{role}': use one of {', '.join(ROLES)}")
        token, h = new_token(PREFIX_API)
        with self.db.session() as s:
            uname = user or "admin"
            u = s.scalar(select(User).where(User.tenant_id == tid, User.name == uname))
            if u is None:
                if role is None:
                    raise NotFound(f"user '{uname}' does not exist: give --role to create it")
                _check_name(uname, "user")
                u = User(tenant_id=tid, name=uname, role=role)
                s.add(u)
                s.flush()
            elif role is not None and role != u.role:
                raise Conflict(f"user '{uname}' has role '{u.role}', not '{role}'")
            expires = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None
            s.add(ApiToken(tenant_id=tid, user_id=u.id, name=name, token_hash=h, expires_at=expires))
            audit.record(s, who, "token.create", name, user=uname)
            return {
                "name": name,
                "user": uname,
                "role": u.role,
                "token": token,
                "expires_at": expires.isoformat() if expires else None,
            }

    def list_tokens(self, who: Principal, page: Page) -> Paged[dict[str, Any]]:
        """The tenant's API tokens (never the secrets): admins only."""
        who.require("admin")
        tid = who.require_tenant()
        with self.db.session() as s:
            q = select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.tenant_id == tid)
            rows = s.execute(keyset(q, [ApiToken.id], page)).all()
            return paged(rows, page, lambda r: (r[0].id,), lambda r: _token_json(r[0], r[1]))

    def revoke_token(self, who: Principal, token_id: int) -> dict[str, Any]:
        """Revoke an API token; refused for the tenant's last usable admin token (that would lock the tenant out)."""
        who.require("admin")
        tid = who.require_tenant()
        with self.db.session() as s:
            row = s.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.id == token_id, ApiToken.tenant_id == tid)
            ).first()
            if row is None:
                raise NotFound(f"API token {token_id} does not exist: 'bulkhead token list' shows the tenant's tokens")
            tok, user = row
            if not tok.revoked:
                if user.role == "admin" and _usable_admin_tokens(s, tid) <= {tok.id}:
                    raise Conflict(
                        f"token {token_id} is the tenant's last usable admin token: create another admin token first "
                        "('bulkhead token create NAME --user USER --role admin')"
                    )
                tok.revoked = True
                audit.record(s, who, "token.revoke", tok.name, token_id=tok.id, user=user.name)
            return _token_json(tok, user)

    def delete_user(self, who: Principal, name: str) -> dict[str, Any]:
        """Remove a user and revoke (delete) their tokens; refused for the tenant's last admin."""
        who.require("admin")
        tid = who.require_tenant()
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.tenant_id == tid, User.name == name).with_for_update())
            if user is None:
                raise NotFound(f"user '{name}' does not exist in this tenant")
            if user.role == "admin":
                admins = s.scalar(select(func.count()).select_from(User).where(User.tenant_id == tid, User.role == "admin"))
                if (admins or 0) <= 1:
                    raise Conflict(f"'{name}' is the tenant's last admin: create another admin before removing this one")
                if _usable_admin_tokens(s, tid, exclude_user=user.id) == set():
                    raise Conflict(f"removing '{name}' would leave no usable admin token: create one for another admin first")
            tokens = list(s.scalars(select(ApiToken).where(ApiToken.user_id == user.id)))
            for t in tokens:
                s.delete(t)
            audit.record(s, who, "user.delete", name, role=user.role, tokens_revoked=[t.name for t in tokens])
            s.delete(user)
            return {"name": name, "role": user.role, "deleted": True, "tokens_revoked": len(tokens)}

    def set_keyring(self, who: Principal, pem: bytes, check_purpose: str) -> dict[str, Any]:
        who.require("admin")
        tid = who.require_tenant()
        try:
            keyring = load_keyring(pem, check_purpose)
        except BundleError as exc:
            raise Invalid(str(exc)) from exc
        with self.db.session() as s:
            tenant = s.get(Tenant, tid)
            assert tenant is not None
            tenant.keyring_pem = pem.decode("ascii", "replace")
            tenant.keyring_check_purpose = check_purpose
            subjects = [a.subject.rfc4514_string() for a in keyring.anchors]
            audit.record(s, who, "keyring.set", tenant.name, anchors=subjects)
            return {"anchors": subjects, "check_purpose": check_purpose}

    def get_keyring(self, who: Principal) -> dict[str, Any]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            tenant = s.get(Tenant, tid)
            assert tenant is not None
            if not tenant.keyring_pem:
                return {"anchors": [], "check_purpose": tenant.keyring_check_purpose, "pem": None}
            kr = load_keyring(tenant.keyring_pem.encode(), tenant.keyring_check_purpose)
            return {
                "anchors": [a.subject.rfc4514_string() for a in kr.anchors],
                "check_purpose": tenant.keyring_check_purpose,
                "pem": tenant.keyring_pem,
            }


def _token_json(t: ApiToken, u: User) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "user": u.name,
        "role": u.role,
        "revoked": t.revoked,
        "created_at": t.created_at.isoformat() if t.created_at else None,
        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
    }


def _usable_admin_tokens(s: Session, tenant_id: int, exclude_user: int | None = None) -> set[int]:
    """Ids of the tenant's admin tokens that are neither revoked nor expired."""
    q = (
        select(ApiToken.id, ApiToken.expires_at)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.tenant_id == tenant_id, User.role == "admin", ApiToken.revoked.is_(False))
    )
    if exclude_user is not None:
        q = q.where(User.id != exclude_user)
    now = utcnow()
    return {i for i, exp in s.execute(q) if exp is None or _aware(exp) >= now}
