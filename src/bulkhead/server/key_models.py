"""SQLAlchemy model of the tenants' OpenPGP signing keys (CSAF advisories, the overlay's apt repository).

Kept apart from models.py (same declarative Base, created by migration 0034); every row belongs to one tenant.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

__all__ = ["SigningKey"]


class SigningKey(Base):
    """A tenant's signing keys for one purpose, the same for every server host (services/signing_keys.py).

    The key (tenant, purpose) makes a key once per cluster: of two hosts that made one at once, one insert wins.
    """

    __tablename__ = "signing_keys"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)  # "advisories" or "apt"
    fingerprint: Mapped[str] = mapped_column(String(64))  # the current key's
    retiring: Mapped[str | None] = mapped_column(String(64))  # during a rotation: the old key, signing along
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # when that rotation began
    # The armoured secret keys (current, then retiring), sealed with the server secret (security.seal).
    secret_sealed: Mapped[str] = mapped_column(Text)
    public_key: Mapped[str] = mapped_column(Text)  # their armoured public keys, one block
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)  # when the current key was stored
