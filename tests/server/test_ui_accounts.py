"""Web UI accounts at the service level (both databases): argon2id hashes, sessions that end, CSRF comparison."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bulkhead.server.db import Database
from bulkhead.server.errors import Forbidden, Invalid, NotFound, Unauthorized
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.tenants import TenantService
from bulkhead.server.services.ui_accounts import AccountService, csrf_ok
from bulkhead.server.ui.accounts import LoginLimits
from bulkhead.server.ui_models import UiSession, UserPassword

SYSTEM = Principal("system", "admin")


def admin_of(db: Database, tenant: str) -> Principal:
    out = TenantService(db).create_tenant(SYSTEM, tenant)
    return Principal("user", "admin", out["id"], tenant, "admin")


def test_passwords_are_stored_as_argon2id_and_checked(db: Database) -> None:
    admin = admin_of(db, "acme")
    acc = AccountService(db)
    acc.set_password(admin, "admin", "a long enough secret")
    with db.session() as s:
        stored = s.scalar(select(UserPassword.password_hash))
    assert stored is not None and stored.startswith("$argon2id$") and "a long enough secret" not in stored
    token = acc.login("acme", "admin", "a long enough secret")
    me = acc.resolve(token)
    assert me is not None and me.principal.role == "admin" and me.principal.tenant_id == admin.tenant_id
    assert me.principal.name == "admin (web)" and me.user == "admin"
    with pytest.raises(Unauthorized):
        acc.login("acme", "admin", "a wrong secret!!")
    with pytest.raises(Unauthorized):
        acc.login("other", "admin", "a long enough secret")  # users belong to their tenant
    with db.session() as s:  # only the token's hash is stored
        assert s.scalar(select(UiSession.token_hash)) != token


def test_only_admins_set_passwords_and_short_ones_are_refused(db: Database) -> None:
    admin = admin_of(db, "acme")
    TenantService(db).create_user(admin, "ops", "operator")
    acc = AccountService(db)
    operator = Principal("user", "ops", admin.tenant_id, "acme", "operator")
    with pytest.raises(Forbidden):
        acc.set_password(operator, "ops", "a long enough secret")
    with pytest.raises(Invalid, match="at least 10"):
        acc.set_password(admin, "ops", "short")
    with pytest.raises(NotFound, match="bulkhead user add"):
        acc.set_password(admin, "nobody", "a long enough secret")
    other = admin_of(db, "other")
    with pytest.raises(NotFound):
        acc.set_password(other, "ops", "a long enough secret")  # another tenant's admin cannot reach acme's user


def test_sessions_expire_and_end_on_logout_reset_and_removal(db: Database) -> None:
    admin = admin_of(db, "acme")
    TenantService(db).create_user(admin, "ops", "operator")
    AccountService(db).set_password(admin, "ops", "a long enough secret")
    expired = AccountService(db, session_hours=-1).login("acme", "ops", "a long enough secret")
    acc = AccountService(db)
    assert acc.resolve(expired) is None
    a = acc.login("acme", "ops", "a long enough secret")
    b = acc.login("acme", "ops", "a long enough secret")
    acc.logout(a)
    assert acc.resolve(a) is None and acc.resolve(b) is not None
    me = acc.resolve(b)
    assert me is not None
    with pytest.raises(Unauthorized, match="current password is wrong"):
        acc.change_own_password(me, "not the password", "a brand new secret")
    fresh = acc.change_own_password(me, "a long enough secret", "a brand new secret")
    assert acc.resolve(b) is None and acc.resolve(fresh) is not None
    assert acc.set_password(admin, "ops", "set by the admin")["sessions_ended"] == 1
    assert acc.resolve(fresh) is None
    last = acc.login("acme", "ops", "set by the admin")
    TenantService(db).delete_user(admin, "ops")
    assert acc.resolve(last) is None
    with db.session() as s:
        assert s.scalar(select(UiSession).limit(1)) is None and s.scalar(select(UserPassword).limit(1)) is None


def test_csrf_tokens_compare_whole() -> None:
    assert csrf_ok("abc", "abc")
    assert not csrf_ok("abc", None) and not csrf_ok("abc", "") and not csrf_ok("abc", "ab") and not csrf_ok("abc", "abcd")


def test_login_limits_count_per_account() -> None:
    limits = LoginLimits(limit=3, window=60)
    for _ in range(3):
        assert limits.retry_after("acme/ops") == 0
        limits.failed("acme/ops")
    assert limits.retry_after("acme/ops") > 0 and limits.retry_after("acme/other") == 0
