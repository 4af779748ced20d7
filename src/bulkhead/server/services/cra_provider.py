"""A tenant's CSAF provider: where its public /.well-known/ is (BULKHEAD_CSAF_HOSTS), what it says about itself
(publisher, namespace, security contact, policy), set by admins (audited `cra.provider.*`), and its OpenPGP signing
key (imported by an admin, or made at the first publication; kept for every host by services/signing_keys.py, its
public half also here). Advisories (services/cra_advisories.py) and the public provider (services/csaf_public.py)
read it from here.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..advisory_models import CraProvider
from ..cra_models import CraProduct
from ..db import Database
from ..errors import Conflict, Invalid, NotFound
from ..models import Tenant
from ..openpgp import OpenPgp
from ..settings import Settings
from . import audit
from .auth import Principal
from .clock import Clock, system_clock
from .signing_keys import ADVISORIES, SharedKeys, StoredKeys

__all__ = ["MAX_TEXT", "ProviderInfo", "ProviderService", "checked_text", "contact_uri"]

MAX_TEXT = 4000


def contact_uri(text: str) -> str:
    """A security contact as RFC 9116 wants it: a mailto:, https: or tel: URI (an e-mail address becomes mailto:)."""
    text = text.strip()
    if re.fullmatch(r"(mailto:[^\s@]+@[^\s@]+|https://\S+|tel:\+?[0-9 ()-]+)", text):
        return text
    if re.fullmatch(r"[^\s@:/]+@[^\s@/]+\.[^\s@/]+", text):
        return f"mailto:{text}"
    raise Invalid(f"contact {text!r} must be an e-mail address or a mailto:, https: or tel: URI")


def _https(text: str, what: str) -> str:
    text = text.strip()
    if not re.fullmatch(r"https://[^\s/]+(/\S*)?", text) or len(text) > 512:
        raise Invalid(f"{what} must be an https:// URL of at most 512 characters")
    return text


def checked_text(value: str | None, what: str, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > limit or any(not (c.isprintable() or c in "\n\t") for c in value):
        raise Invalid(f"{what} must be 1-{limit} printable characters")
    return value


@dataclass(frozen=True)
class ProviderInfo:
    """What the public provider of one tenant says about itself."""

    tenant_id: int
    tenant: str
    base: str
    publisher: dict[str, Any]
    contact: str | None
    policy: str | None
    fingerprint: str | None
    public_key: str | None
    updated_at: dt.datetime | None


class ProviderService:
    def __init__(self, db: Database, pgp: OpenPgp, secret: bytes, settings: Settings, clock: Clock = system_clock) -> None:
        self.db, self.pgp, self.settings, self.clock = db, pgp, settings, clock
        self.keys = SharedKeys(db, secret, pgp, ADVISORIES, clock)

    # -- where a tenant's provider is -------------------------------------------------------------------------------
    def hosts(self) -> dict[str, str]:
        """Host (lower case) → tenant name, from BULKHEAD_CSAF_HOSTS ("*" is every other host)."""
        out: dict[str, str] = {}
        for item in (self.settings.csaf_hosts or "").split(","):
            host, _, tenant = item.partition("=")
            if host.strip() and tenant.strip():
                out[host.strip().lower()] = tenant.strip()
        return out

    def tenant_for_host(self, host: str) -> str | None:
        hosts = self.hosts()
        host = host.lower()
        return hosts.get(host) or hosts.get(host.rsplit(":", 1)[0]) or hosts.get("*")

    def base(self, tenant: str, origin: str) -> str:
        """Where the tenant's /.well-known/ is: the root of the host BULKHEAD_CSAF_HOSTS names for it, else
        /{tenant} on this server (BULKHEAD_PUBLIC_URL, else the request's own origin)."""
        root = self.settings.public_url or origin
        scheme = root.split("://", 1)[0]
        for host, name in sorted(self.hosts().items()):
            if name == tenant and host != "*":
                return f"{scheme}://{host}"
        if self.hosts().get("*") == tenant:
            return root
        return f"{root}/{tenant}"

    # -- provider settings ------------------------------------------------------------------------------------------
    def provider(self, s: Session, tid: int, origin: str) -> ProviderInfo:
        tenant = s.get(Tenant, tid)
        if tenant is None:
            raise NotFound("no such tenant")
        row = s.get(CraProvider, tid)
        base = self.base(tenant.name, origin)
        name = row.publisher_name if row and row.publisher_name else None
        if name is None:
            name = s.scalar(select(CraProduct.manufacturer).where(CraProduct.tenant_id == tid).order_by(CraProduct.id).limit(1))
        contact = (row.contact if row else None) or (
            contact_uri(self.settings.security_contact) if self.settings.security_contact else None
        )
        publisher: dict[str, Any] = {
            "category": "vendor",
            "name": name or tenant.name,
            "namespace": (row.namespace if row and row.namespace else None) or base,
        }
        if contact:
            publisher["contact_details"] = contact.removeprefix("mailto:")
        return ProviderInfo(
            tid,
            tenant.name,
            base,
            publisher,
            contact,
            (row.policy if row else None) or self.settings.security_policy,
            row.key_fingerprint if row else None,
            row.public_key if row else None,
            row.updated_at if row else None,
        )

    def provider_json(self, p: ProviderInfo) -> dict[str, Any]:
        return {
            "tenant": p.tenant,
            "base": p.base,
            "provider_metadata": f"{p.base}/.well-known/csaf/provider-metadata.json",
            "security_txt": f"{p.base}/.well-known/security.txt",
            "advisories_page": f"{p.base}/advisories/",
            "publisher": p.publisher,
            "contact": p.contact,
            "policy": p.policy,
            "signing": {
                "available": self.pgp.available,
                "fingerprint": p.fingerprint,
                "key_url": f"{p.base}/.well-known/csaf/openpgp/{p.fingerprint}.asc" if p.fingerprint else None,
            },
        }

    def show_provider(self, who: Principal, origin: str) -> dict[str, Any]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            return self.provider_json(self.provider(s, tid, origin))

    def set_provider(self, who: Principal, fields: dict[str, Any], origin: str) -> dict[str, Any]:
        """Set the publisher name, namespace, security contact or policy (keys left out stay; null clears). Admins."""
        who.require("admin")
        tid = who.require_tenant()
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if value is None:
                values[key] = None
            elif key == "publisher_name":
                values[key] = checked_text(value, "publisher_name", 256)
            elif key == "namespace":
                values[key] = _https(value, "namespace")
            elif key == "contact":
                values[key] = contact_uri(value)
            elif key == "policy":
                values[key] = _https(value, "policy")
        with self.db.session() as s:
            row = s.get(CraProvider, tid)
            if row is None:
                row = CraProvider(tenant_id=tid)
                s.add(row)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = self.clock()
            s.flush()
            audit.record(s, who, "cra.provider.set", "csaf-provider", **values)
            return self.provider_json(self.provider(s, tid, origin))

    def import_key(self, who: Principal, armored: str, origin: str) -> dict[str, Any]:
        """Replace the tenant's OpenPGP signing key by an administrator's, for every host. Published signatures stay
        as they were. A key that is none, or needs a passphrase, is refused with nothing stored."""
        who.require("admin")
        tid = who.require_tenant()
        if not self.pgp.available:
            raise Conflict("gpg is not installed on the server (apt install gnupg): no key can be imported")
        bundle = self.pgp.read(armored)
        with self.db.session() as s:
            keys = self.keys.replace(s, tid, bundle)
            self._publish_key(s, who, tid, keys, "imported")
            return self.provider_json(self.provider(s, tid, origin))

    def signing_key(self, s: Session, p: ProviderInfo, who: Principal) -> StoredKeys | None:
        """The tenant's signing key, the same on every host (made at the first publication); None without gpg."""
        if not self.pgp.available:
            return None
        uid = f"{p.publisher['name']} CSAF signing <csaf@{p.tenant}.bulkhead>"
        keys, how = self.keys.ensure(s, p.tenant_id, uid, expect=p.fingerprint)
        self._publish_key(s, who, p.tenant_id, keys, how)
        return keys

    def sign(self, s: Session, p: ProviderInfo, who: Principal, data: bytes) -> tuple[str, str] | None:
        """The signing key's fingerprint and an armoured detached signature of `data`; None without gpg."""
        keys = self.signing_key(s, p, who)
        if keys is None:
            return None
        return keys.current, self.pgp.sign(p.tenant_id, self.keys.bundle(keys), data)

    def _publish_key(self, s: Session, who: Principal, tid: int, keys: StoredKeys, how: str) -> None:
        """The provider's public key made the stored one's (audited when it changes)."""
        row = s.get(CraProvider, tid, populate_existing=True)
        if row is not None and (row.key_fingerprint, row.public_key) == (keys.current, keys.public):
            return
        if row is None:
            row = CraProvider(tenant_id=tid)
            s.add(row)
        row.key_fingerprint, row.public_key, row.updated_at = keys.current, keys.public, self.clock()
        s.flush()
        audit.record(s, who, "cra.provider.key", "csaf-provider", fingerprint=keys.current, origin=how)
