"""A tenant's public CSAF provider (no authentication: TLP:WHITE documents are public by the standard's rules).

What it serves, all read from the published advisories (their stored bytes, hashes and signatures):
provider-metadata.json, the directory `white/<year>/<file>` with `.sha256`, `.sha512` and `.asc` next to each file,
`index.txt` and `changes.csv`, the OpenPGP public key, security.txt (RFC 9116) and HTML pages. A tenant is
addressed by the first path segment (`/{tenant}/.well-known/…`) or, at the root, by the Host header mapped in
BULKHEAD_CSAF_HOSTS. Drafts and revisions not yet published are never served.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import select

from bulkhead.cra.csaf import filename
from bulkhead.cra.csaf_html import advisory_html, index_html
from bulkhead.cra.csaf_provider import (
    Published,
    changes_csv,
    directory_path,
    index_txt,
    provider_metadata,
    security_txt,
)

from ..advisory_models import CraAdvisory
from ..errors import NotFound
from ..models import Tenant
from .cra_advisories import AdvisoryService, _aware
from .cra_provider import ProviderInfo

__all__ = ["PublicFile", "PublicProvider"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class PublicFile:
    body: bytes
    media_type: str


def _published(a: CraAdvisory) -> Published:
    initial = _aware(a.initial_release_date or a.created_at)
    return Published(filename(a.tracking_id), initial, _aware(a.current_release_date or initial))


class PublicProvider:
    def __init__(self, advisories: AdvisoryService) -> None:
        self.adv = advisories
        self.db = advisories.db

    def tenant_id(self, name: str | None, host: str | None) -> int:
        """The tenant a request addresses: by name (path form) or by its Host (BULKHEAD_CSAF_HOSTS)."""
        if name is None:
            name = self.adv.providers.tenant_for_host(host or "")
            if name is None:
                raise NotFound(
                    f"no tenant's advisories are published at host {host!r}: use /TENANT/.well-known/csaf/"
                    "provider-metadata.json, or map the host with BULKHEAD_CSAF_HOSTS=host=tenant"
                )
        with self.db.session() as s:
            tid = s.scalar(select(Tenant.id).where(Tenant.name == name))
        if tid is None:
            raise NotFound(f"no tenant {name!r} publishes advisories here")
        return tid

    def _info(self, tid: int, origin: str) -> tuple[ProviderInfo, list[CraAdvisory]]:
        with self.db.session() as s:
            info = self.adv.providers.provider(s, tid, origin)
            rows = self.adv.published_rows(s, tid)
            s.expunge_all()
        return info, rows

    def metadata(self, tid: int, origin: str) -> PublicFile:
        info, rows = self._info(tid, origin)
        times = [_aware(a.current_release_date) for a in rows if a.current_release_date]
        if info.updated_at:
            times.append(_aware(info.updated_at))
        keys = []
        if info.fingerprint:
            keys.append((info.fingerprint, f"{info.base}/.well-known/csaf/openpgp/{info.fingerprint}.asc"))
        signed = bool(rows) and all(a.signature for a in rows) and self.adv.pgp.available
        doc = provider_metadata(info.base, info.publisher, max(times, default=_EPOCH), keys, signed)
        return PublicFile((json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), "application/json")

    def index(self, tid: int, origin: str) -> PublicFile:
        _, rows = self._info(tid, origin)
        return PublicFile(index_txt(_published(a) for a in rows).encode(), "text/plain; charset=utf-8")

    def changes(self, tid: int, origin: str) -> PublicFile:
        _, rows = self._info(tid, origin)
        return PublicFile(changes_csv(_published(a) for a in rows).encode(), "text/csv; charset=utf-8")

    def file(self, tid: int, year: str, name: str, origin: str) -> PublicFile:
        """A document or the hash or signature file next to it."""
        _, rows = self._info(tid, origin)
        for suffix in ("", ".sha256", ".sha512", ".asc"):
            base = name.removesuffix(suffix) if suffix else name
            if suffix and not name.endswith(suffix):
                continue
            for a in rows:
                p = _published(a)
                if p.path != f"{year}/{base}" or a.published is None:
                    continue
                if suffix == "":
                    return PublicFile(a.published.encode(), "application/json")
                if suffix == ".sha256":
                    return PublicFile(f"{a.sha256}  {p.file}\n".encode(), "text/plain; charset=utf-8")
                if suffix == ".sha512":
                    return PublicFile(f"{a.sha512}  {p.file}\n".encode(), "text/plain; charset=utf-8")
                if a.signature is None:
                    raise NotFound(
                        f"{p.file} is not signed: gpg was not available on the server when it was published "
                        "(install gnupg, then revise and publish it again)"
                    )
                return PublicFile(a.signature.encode(), "application/pgp-signature")
        raise NotFound(f"no published advisory at white/{year}/{name}; see index.txt")

    def key(self, tid: int, fingerprint: str, origin: str) -> PublicFile:
        info, _ = self._info(tid, origin)
        if info.fingerprint is None or info.public_key is None or fingerprint.upper() != info.fingerprint.upper():
            raise NotFound(f"no OpenPGP key {fingerprint}; provider-metadata.json lists the keys")
        return PublicFile(info.public_key.encode(), "application/pgp-keys")

    def security_txt(self, tid: int, origin: str, now: dt.datetime) -> PublicFile:
        info, _ = self._info(tid, origin)
        if not info.contact:
            raise NotFound(
                "no security contact is set for this tenant: an admin sets it ('bulkhead cra provider set --contact "
                "psirt@example.com') or the server's BULKHEAD_SECURITY_CONTACT"
            )
        expires = now + dt.timedelta(days=self.adv.settings.security_txt_days)
        text = security_txt(info.base, [info.contact], expires, info.policy)
        return PublicFile(text.encode(), "text/plain; charset=utf-8")

    def html_index(self, tid: int, origin: str) -> PublicFile:
        info, rows = self._info(tid, origin)
        entries = []
        for a in rows:
            stem = filename(a.tracking_id).removesuffix(".json")
            date = _published(a).current_release_date.isoformat()
            entries.append((f"{info.base}/advisories/{stem}.html", a.tracking_id, a.title, date))
        return PublicFile(index_html(str(info.publisher["name"]), entries).encode(), "text/html; charset=utf-8")

    def html_page(self, tid: int, stem: str, origin: str) -> PublicFile:
        info, rows = self._info(tid, origin)
        for a in rows:
            if filename(a.tracking_id) == f"{stem}.json" and a.published:
                p = _published(a)
                url = f"{info.base}/.well-known/csaf/white/{directory_path(p.file, p.initial_release_date)}"
                return PublicFile(advisory_html(json.loads(a.published), url).encode(), "text/html; charset=utf-8")
        raise NotFound(f"no published advisory {stem}; see {info.base}/advisories/")
