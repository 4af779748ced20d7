"""SQLAlchemy models of the web UI's accounts: users' password hashes and their browser sessions.

Kept apart from models.py (same declarative Base, created by migration 0023). A password belongs to one `users`
row (the same users, and roles, as the API tokens); a session row is what a browser's cookie points at, so
logout, a password change or reset and a user's removal end it at once (docs/adr/0007-web-ui.md). A tenant may
also sign its users in through its OpenID Connect provider (`oidc_providers`, `user_identities`: migration 0028).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["OidcProvider", "UiSession", "UserIdentity", "UserPassword"]


class UserPassword(Base):
    """A user's argon2id password hash (PHC string); a user without one cannot sign in to the web UI."""

    __tablename__ = "user_passwords"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UiSession(Base):
    """One signed-in browser: the SHA-256 of its cookie's token, whose it is, until when, and its CSRF token."""

    __tablename__ = "ui_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class OidcProvider(Base):
    """A tenant's OpenID Connect provider for web sign-in (migration 0028): one per tenant, set by its admins."""

    __tablename__ = "oidc_providers"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(512))
    client_id: Mapped[str] = mapped_column(String(256))
    client_secret: Mapped[str] = mapped_column(Text)  # encrypted with the server's secret (services/oidc.py)
    username_claim: Mapped[str] = mapped_column(String(64))
    # The role of a user the provider vouches for who has no account here yet (None: only existing users sign in).
    default_role: Mapped[str | None] = mapped_column(String(16))
    updated_by: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UserIdentity(Base):
    """A provider's account (issuer, subject) bound to a user at its first sign-in: later sign-ins find the user by
    it, so a renamed account at the provider still signs in as the same user, and a new account that takes an old
    name there does not."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
