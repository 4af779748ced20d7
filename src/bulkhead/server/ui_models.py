"""SQLAlchemy models of the web UI's accounts: users' password hashes and their browser sessions.

Kept apart from models.py (same declarative Base, created by migration 0023). A password belongs to one `users`
row (the same users, and roles, as the API tokens); a session row is what a browser's cookie points at, so
logout, a password change or reset and a user's removal end it at once (docs/adr/0007-web-ui.md).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["UiSession", "UserPassword"]


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
