"""Web UI accounts: passwords (argon2id), sign-in, server-side sessions with their CSRF tokens, and their end.

The users are the tenant's users (the same rows and roles as the API tokens); a signed-in browser acts as a
`Principal` of kind "user" with the user's role, so every page calls the same services, with the same role checks,
as the management API. See docs/adr/0007-web-ui.md.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import Invalid, NotFound, Unauthorized
from ..models import Tenant, User, utcnow
from ..security import hash_token
from ..ui_models import UiSession, UserPassword
from . import audit
from .auth import Principal, _aware

__all__ = ["COOKIE", "MIN_PASSWORD", "SESSION_HOURS", "AccountService", "SignedIn", "check_password", "csrf_ok"]

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
COOKIE = "bulkhead_session"  # the web UI session's cookie (ui/web.py; the web terminal's WebSocket)
SESSION_HOURS = 12
_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) defaults
# Verified when the user does not exist, so that an unknown name costs as long as a wrong password.
_DUMMY = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class SignedIn:
    """A browser's valid session: who it is (as a principal for the services), its CSRF token, its user's id."""

    principal: Principal
    csrf: str
    user_id: int
    user: str


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"the password is too long: use at most {MAX_PASSWORD} characters")


def web_principal(user: User, tenant: Tenant) -> Principal:
    return Principal("user", f"{user.name} (web)", tenant.id, tenant.name, user.role)


class AccountService:
    def __init__(self, db: Database, session_hours: float = SESSION_HOURS) -> None:
        self.db = db
        self.session_hours = session_hours

    # -- passwords ---------------------------------------------------------------------------------

    def set_password(self, who: Principal, name: str, password: str) -> dict[str, Any]:
        """Set (or reset) a user's password: admins of the tenant. Ends every session of that user."""
        who.require("admin")
        tid = who.require_tenant()
        check_password(password)
        digest = _hasher.hash(password)
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.tenant_id == tid, User.name == name))
            if user is None:
                raise NotFound(f"user '{name}' does not exist in this tenant: create it first ('bulkhead user add')")
            _store(s, user.id, digest)
            ended = _end_sessions(s, user.id)
            audit.record(s, who, "user.password.reset", name, sessions_ended=ended)
            return {"name": name, "role": user.role, "password_set": True, "sessions_ended": ended}

    def change_own_password(self, me: SignedIn, current: str, new: str) -> str:
        """The signed-in user changes their password; every session of theirs ends and a new one is returned."""
        check_password(new)
        with self.db.session() as s:
            row = s.get(UserPassword, me.user_id)
            if row is None or not _verify(row.password_hash, current):
                raise Unauthorized("the current password is wrong")
            _store(s, me.user_id, _hasher.hash(new))
            _end_sessions(s, me.user_id)
            audit.record(s, me.principal, "user.password.change", me.user)
            token, _csrf = self._open(s, me.user_id)
            return token

    # -- sessions ----------------------------------------------------------------------------------

    def login(self, tenant: str, name: str, password: str) -> str:
        """A new session's cookie token for these credentials; Unauthorized (one message for every cause) if wrong."""
        wrong = Unauthorized("wrong tenant, user name or password")
        with self.db.session() as s:
            row = s.execute(
                select(User, UserPassword.password_hash)
                .join(Tenant, Tenant.id == User.tenant_id)
                .join(UserPassword, UserPassword.user_id == User.id)
                .where(Tenant.name == tenant, User.name == name)
            ).first()
            if row is None:
                _verify(_DUMMY, password)
                raise wrong
            user, digest = row
            if not _verify(digest, password):
                raise wrong
            if _hasher.check_needs_rehash(digest):
                _store(s, user.id, _hasher.hash(password))
            token, _csrf = self._open(s, user.id)
            tenant_row = s.get(Tenant, user.tenant_id)
            assert tenant_row is not None
            audit.record(s, web_principal(user, tenant_row), "user.login", user.name)
            return token

    def sign_in_as(self, user_id: int, how: str) -> str:
        """A new session for a user another authority vouched for (`how`: "oidc <issuer>"), audited as a sign-in."""
        with self.db.session() as s:
            user = s.get(User, user_id)
            if user is None:
                raise Unauthorized("the user was removed during the sign-in: ask an admin")
            tenant_row = s.get(Tenant, user.tenant_id)
            assert tenant_row is not None
            token, _csrf = self._open(s, user.id)
            audit.record(s, web_principal(user, tenant_row), "user.login", user.name, method=how[:200])
            return token

    def resolve(self, token: str | None) -> SignedIn | None:
        """The session a cookie's token names, or None (missing, unknown, expired or ended)."""
        if not token or len(token) > 128:
            return None
        with self.db.session() as s:
            row = s.execute(
                select(UiSession, User, Tenant)
                .join(User, User.id == UiSession.user_id)
                .join(Tenant, Tenant.id == User.tenant_id)
                .where(UiSession.token_hash == hash_token(token))
            ).first()
            if row is None:
                return None
            sess, user, tenant = row
            if _aware(sess.expires_at) <= utcnow():
                s.delete(sess)
                return None
            return SignedIn(web_principal(user, tenant), sess.csrf, user.id, user.name)

    def logout(self, token: str | None) -> None:
        if not token:
            return
        with self.db.session() as s:
            row = s.execute(
                select(UiSession, User, Tenant)
                .join(User, User.id == UiSession.user_id)
                .join(Tenant, Tenant.id == User.tenant_id)
                .where(UiSession.token_hash == hash_token(token))
            ).first()
            if row is None:
                return
            sess, user, tenant = row
            s.delete(sess)
            audit.record(s, web_principal(user, tenant), "user.logout", user.name)

    def _open(self, s: Session, user_id: int) -> tuple[str, str]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        # Expired sessions of this user go when it opens a new one: the table stays as small as its live sessions.
        s.execute(delete(UiSession).where(UiSession.user_id == user_id, UiSession.expires_at <= now))
        s.add(
            UiSession(
                token_hash=hash_token(token),
                user_id=user_id,
                csrf=csrf,
                created_at=now,
                expires_at=now + dt.timedelta(hours=self.session_hours),
            )
        )
        return token, csrf


def csrf_ok(expected: str, given: str | None) -> bool:
    """The synchronizer token check, in constant time."""
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def _verify(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False


def _store(s: Session, user_id: int, digest: str) -> None:
    row = s.get(UserPassword, user_id)
    if row is None:
        s.add(UserPassword(user_id=user_id, password_hash=digest, changed_at=utcnow()))
    else:
        row.password_hash, row.changed_at = digest, utcnow()


def _end_sessions(s: Session, user_id: int) -> int:
    ended = s.execute(delete(UiSession).where(UiSession.user_id == user_id))
    return int(getattr(ended, "rowcount", 0) or 0)
