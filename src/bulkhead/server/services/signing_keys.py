"""A tenant's OpenPGP signing keys, one set per purpose (CSAF advisories, the overlay's apt repository), kept in the
database sealed with the server secret, so that every server host signs with the same keys.

A set is made once per cluster. The host that first needs it takes the keys its GnuPG home held from before the
database kept them (a published key must keep signing), else generates one, and inserts it; the table's key
(tenant, purpose) lets one insert win, and a host that loses the race uses the stored set. Before it signs, a host
fills its own GnuPG home from the set (openpgp.py): the homes are copies. Every host needs the same server secret
(BULKHEAD_SECRET) to open the sealed keys. The overlay rotates its key: a new current key, and the old one signs
along (`retiring`) until the rotation is finished.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import Conflict
from ..key_models import SigningKey
from ..openpgp import KeyBundle, OpenPgp, SigningUnavailable
from ..security import seal, unseal
from .clock import Clock, system_clock

__all__ = ["ADVISORIES", "APT", "SharedKeys", "StoredKeys"]

ADVISORIES, APT = "advisories", "apt"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredKeys:
    """A tenant's keys of one purpose as stored: the secret ones sealed (opened only to fill a GnuPG home)."""

    current: str
    retiring: str | None
    rotated_at: dt.datetime | None
    public: str
    sealed: str

    @property
    def signers(self) -> list[str]:
        return [self.current, *([self.retiring] if self.retiring else [])]


def _when(text: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _stored(row: SigningKey) -> StoredKeys:
    return StoredKeys(row.fingerprint, row.retiring, row.rotated_at, row.public_key, row.secret_sealed)


class SharedKeys:
    def __init__(self, db: Database, secret: bytes, pgp: OpenPgp, purpose: str, clock: Clock = system_clock) -> None:
        self.db, self.secret, self.pgp, self.purpose, self.clock = db, secret, pgp, purpose, clock

    def keys(self, tenant_id: int, uid: str) -> StoredKeys:
        """The tenant's keys (taken from this host's home, or made, when none are stored): one read when stored."""
        with self.db.read() as s:
            row = s.get(SigningKey, (tenant_id, self.purpose))
            if row is not None:
                return _stored(row)
        made = self._made(tenant_id, uid, None)  # no transaction open meanwhile: generating takes a while
        with self.db.session() as s:
            return self._insert(s, tenant_id, *made)[0]

    def ensure(self, s: Session, tenant_id: int, uid: str, expect: str | None = None) -> tuple[StoredKeys, str]:
        """The tenant's keys, in the caller's transaction, and where they come from: "stored", "adopted" (from this
        host's home) or "generated". `expect`: the fingerprint published before the database kept keys, the only
        one that may be adopted (SigningUnavailable when this host's home lacks it). The row is share-locked until the
        caller commits: a key an administrator imports meanwhile on another host waits for this publication, which
        cannot then publish the key being replaced."""
        row = s.get(SigningKey, (tenant_id, self.purpose), with_for_update={"read": True}, populate_existing=True)
        if row is not None:
            return _stored(row), "stored"
        return self._insert(s, tenant_id, *self._made(tenant_id, uid, expect))

    def bundle(self, keys: StoredKeys) -> KeyBundle:
        """The keys opened, to sign with."""
        try:
            secret = unseal(self.secret, keys.sealed)
        except ValueError:
            raise SigningUnavailable(
                "the signing keys in the database were sealed with another server secret: give every server host the "
                "same BULKHEAD_SECRET (or secret.key) as the host that stored them (docs/deployment.md, Several hosts)"
            ) from None
        return KeyBundle(tuple(keys.signers), secret, keys.public)

    def replace(self, s: Session, tenant_id: int, keys: KeyBundle) -> StoredKeys:
        """Store `keys` (checked: OpenPgp.read) in place of the tenant's; every host's home follows at its next
        signature."""
        for _ in range(2):
            row = s.get(SigningKey, (tenant_id, self.purpose), with_for_update=True, populate_existing=True)
            if row is not None:
                row.fingerprint, row.retiring, row.rotated_at = keys.fingerprints[0], None, None
                row.secret_sealed, row.public_key, row.created_at = seal(self.secret, keys.secret), keys.public, self.clock()
                s.flush()
                return _stored(row)
            stored, how = self._insert(s, tenant_id, keys, None, "imported")
            if how == "imported":
                return stored
        raise AssertionError("unreachable: the row was inserted or found")

    def rotate(self, tenant_id: int, uid: str, now: dt.datetime) -> StoredKeys:
        """A new current key; the old one signs along until `finish`. Conflict while a rotation is running."""
        self.keys(tenant_id, uid)
        with self.db.session() as s:
            row = self._locked(s, tenant_id)
            if row.retiring:
                began = row.rotated_at.isoformat() if row.rotated_at else "(unknown)"
                raise Conflict(
                    f"a key rotation began at {began} and is not finished: finish it first "
                    "(bulkhead overlay key --finish), once the devices have fetched the new key"
                )
            new = self.pgp.make(f"{uid} ({now:%Y-%m-%d %H:%M:%S})", beside=self.bundle(_stored(row)))
            row.fingerprint, row.retiring, row.rotated_at = new.fingerprints[0], row.fingerprint, now
            row.secret_sealed, row.public_key, row.created_at = seal(self.secret, new.secret), new.public, now
            s.flush()
            return _stored(row)

    def finish(self, tenant_id: int, uid: str) -> tuple[StoredKeys, str]:
        """The retiring key deleted (from the database, and from every host's home at its next signature); the
        keys and the retired key's fingerprint. Conflict when no rotation is running."""
        self.keys(tenant_id, uid)
        with self.db.session() as s:
            row = self._locked(s, tenant_id)
            retired = row.retiring
            if not retired:
                raise Conflict("no key rotation is running: start one with bulkhead overlay key --rotate")
            kept = self.pgp.only(self.bundle(_stored(row)), [row.fingerprint])
            row.retiring, row.rotated_at = None, None
            row.secret_sealed, row.public_key = seal(self.secret, kept.secret), kept.public
            s.flush()
            return _stored(row), retired

    def _locked(self, s: Session, tenant_id: int) -> SigningKey:
        row = s.get(SigningKey, (tenant_id, self.purpose), with_for_update=True, populate_existing=True)
        assert row is not None  # made by keys() before; a tenant's keys are never deleted on their own
        return row

    def _made(self, tenant_id: int, uid: str, expect: str | None) -> tuple[KeyBundle, dt.datetime | None, str]:
        """Keys for a tenant with none stored: those of this host's home from before (with what it recorded about
        a rotation), else new ones."""
        state = self.pgp.rotation_state(tenant_id)
        if state is not None:
            current, retiring, rotated_at = state
            adopted = self.pgp.local(tenant_id, [current, *([retiring] if retiring else [])])
            if adopted is not None:
                return adopted, _when(rotated_at) if retiring else None, "adopted"
        adopted = self.pgp.local(tenant_id, [expect] if expect else None)
        if adopted is not None:
            return adopted, None, "adopted"
        if expect:
            raise SigningUnavailable(
                f"the tenant's signing key {expect} is neither in the database nor in this host's GnuPG home "
                f"({self.pgp.root / f'tenant-{tenant_id}'}): use it once on the host that holds it, which stores it for "
                "every host, or import it again (bulkhead cra provider import-key)"
            )
        return self.pgp.make(uid), None, "generated"

    def _insert(
        self, s: Session, tenant_id: int, keys: KeyBundle, rotated_at: dt.datetime | None, how: str
    ) -> tuple[StoredKeys, str]:
        """Store `keys` unless another host stored the tenant's first: then those, as "stored"."""
        row = SigningKey(
            tenant_id=tenant_id,
            purpose=self.purpose,
            fingerprint=keys.fingerprints[0],
            retiring=keys.fingerprints[1] if len(keys.fingerprints) > 1 else None,
            rotated_at=rotated_at,
            secret_sealed=seal(self.secret, keys.secret),
            public_key=keys.public,
            created_at=self.clock(),
        )
        try:
            with s.begin_nested():
                s.add(row)
        except IntegrityError:
            q = select(SigningKey).where(SigningKey.tenant_id == tenant_id, SigningKey.purpose == self.purpose)
            winner = s.execute(q.execution_options(populate_existing=True)).scalar_one()
            if how == "adopted":
                log.warning(
                    "tenant %d: this host's %s key %s was not taken into the database, another host's %s was first; "
                    "it stays in this host's GnuPG home",
                    tenant_id,
                    self.purpose,
                    keys.fingerprints[0],
                    winner.fingerprint,
                )
            return _stored(winner), "stored"
        log.info("tenant %d: %s signing key %s %s and stored", tenant_id, self.purpose, row.fingerprint, how)
        return _stored(row), how
