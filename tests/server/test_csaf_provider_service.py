"""The public CSAF provider over stored advisories (SQLite and PostgreSQL), without a live server: which tenant a
Host or path names, where its /.well-known/ is, and what it serves when gpg is not available (documents and hashes,
no signatures, and it says so)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from bulkhead.server.advisory_models import CraAdvisory
from bulkhead.server.db import Database
from bulkhead.server.errors import NotFound
from bulkhead.server.models import Tenant
from bulkhead.server.openpgp import OpenPgp
from bulkhead.server.services.cra_advisories import AdvisoryService
from bulkhead.server.services.cra_provider import contact_uri
from bulkhead.server.services.csaf_public import PublicProvider
from bulkhead.server.settings import Settings
from tests.csaf_validators import schema_errors

T = dt.datetime(2026, 9, 22, 8, 30, tzinfo=dt.UTC)


def _service(db: Database, tmp_path: Path, **settings: object) -> AdvisoryService:
    s = Settings(data_dir=tmp_path, **settings)  # type: ignore[arg-type]
    return AdvisoryService(db, OpenPgp(tmp_path / "openpgp", enabled=False), b"s" * 32, s, clock=lambda: T)


def _published(db: Database) -> tuple[int, bytes]:
    data = b'{"document": {"title": "x"}}\n'
    with db.session() as s:
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        s.add(
            CraAdvisory(
                tenant_id=tenant.id,
                tracking_id="ACME-2026-0001",
                compatible="gw",
                cves=["CVE-2024-5535"],
                title="t",
                cvss={},
                state="final",
                version=1,
                revisions=[],
                initial_release_date=T,
                current_release_date=T,
                published=data.decode(),
                sha256=hashlib.sha256(data).hexdigest(),
                sha512=hashlib.sha512(data).hexdigest(),
                created_by="user:x",
                created_at=T,
                updated_at=T,
            )
        )
        return tenant.id, data


def test_host_mapping_and_bases(db: Database, tmp_path: Path) -> None:
    svc = _service(db, tmp_path, csaf_hosts="advisories.acme.example=acme, *=other", public_url="https://updates.example")
    assert svc.providers.tenant_for_host("Advisories.Acme.Example") == "acme"
    assert svc.providers.tenant_for_host("advisories.acme.example:443") == "acme"
    assert svc.providers.tenant_for_host("elsewhere.example") == "other"
    assert svc.providers.base("acme", "http://127.0.0.1:1") == "https://advisories.acme.example"
    assert svc.providers.base("other", "http://127.0.0.1:1") == "https://updates.example"
    assert svc.providers.base("third", "http://127.0.0.1:1") == "https://updates.example/third"
    plain = _service(db, tmp_path)
    assert plain.providers.tenant_for_host("x.example") is None
    assert plain.providers.base("acme", "http://127.0.0.1:8080") == "http://127.0.0.1:8080/acme"
    tid, _ = _published(db)
    pub = PublicProvider(svc)
    assert pub.tenant_id(None, "advisories.acme.example") == tid == pub.tenant_id("acme", None)
    with pytest.raises(NotFound, match="BULKHEAD_CSAF_HOSTS"):
        PublicProvider(plain).tenant_id(None, "x.example")
    with pytest.raises(NotFound, match="no tenant 'nope'"):
        pub.tenant_id("nope", None)


def test_without_gpg_documents_and_hashes_are_served_and_signatures_say_why_not(db: Database, tmp_path: Path) -> None:
    svc = _service(db, tmp_path, security_contact="psirt@acme.example")
    tid, data = _published(db)
    pub = PublicProvider(svc)
    origin = "https://srv.example"
    meta = json.loads(pub.metadata(tid, origin).body)
    assert schema_errors(meta, "provider_json_schema.json") == []
    assert meta["role"] == "csaf_provider" and "public_openpgp_keys" not in meta
    assert meta["last_updated"] == "2026-09-22T08:30:00Z"
    assert pub.index(tid, origin).body == b"2026/acme-2026-0001.json\n"
    assert pub.changes(tid, origin).body == b'"2026/acme-2026-0001.json","2026-09-22T08:30:00Z"\n'
    assert pub.file(tid, "2026", "acme-2026-0001.json", origin).body == data
    sha = pub.file(tid, "2026", "acme-2026-0001.json.sha256", origin).body.decode()
    assert sha == f"{hashlib.sha256(data).hexdigest()}  acme-2026-0001.json\n"
    with pytest.raises(NotFound, match="not signed: gpg was not available"):
        pub.file(tid, "2026", "acme-2026-0001.json.asc", origin)
    with pytest.raises(NotFound):
        pub.file(tid, "2025", "acme-2026-0001.json", origin)  # the year folder is that of the initial release
    text = pub.security_txt(tid, origin, T).body.decode()
    assert "Contact: mailto:psirt@acme.example\n" in text and "Expires: 2027-03-21T08:30:00Z\n" in text
    assert f"CSAF: {origin}/acme/.well-known/csaf/provider-metadata.json\n" in text
    with db.session() as s:
        assert svc.providers.provider_json(svc.providers.provider(s, tid, origin))["signing"]["available"] is False


def test_contacts() -> None:
    assert contact_uri("psirt@acme.example") == "mailto:psirt@acme.example"
    assert contact_uri("https://acme.example/report") == "https://acme.example/report"
    for bad in ("psirt", "http://acme.example", "mailto:nobody", "javascript:alert(1)"):
        with pytest.raises(Exception, match="must be an e-mail address"):
            contact_uri(bad)
