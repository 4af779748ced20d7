"""CSAF advisories of a tenant: create, preview, revise and publish them (operators; viewers read), audited as
`cra.advisory.*`. The tenant's provider settings and signing key are services/cra_provider.py's.

An advisory names a product (compatible) and CVEs; its document is made by bulkhead.cra.csaf from the product's
releases, their findings for those CVEs and the VEX statements behind them. Until it is published it is a draft
whose document is made again from the current data on every read (dates: its last change). Publishing freezes the
document (status final, the next integer version, a revision history entry), hashes it and signs it with the
tenant's OpenPGP key; those exact bytes are what the public provider (services/csaf_public.py) serves. A revision
after publication makes a new draft version; the published one stays out until the next publish.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bulkhead import __version__
from bulkhead.cra.csaf import (
    AdvisoryInput,
    CsafError,
    CveInfo,
    FindingInfo,
    ProductInfo,
    Publisher,
    ReleaseInfo,
    Revision,
    Tracking,
    build_advisory,
    cvss_score,
    document_bytes,
    filename,
)
from bulkhead.cra.csaf_provider import directory_path

from ..advisory_models import CraAdvisory
from ..cra_models import CraProduct
from ..db import Database
from ..errors import Conflict, Invalid, NotFound, Unprocessable
from ..models import Release, Tenant
from ..openpgp import OpenPgp
from ..settings import Settings
from ..vuln_models import VexStatement, VulnCve, VulnFinding
from . import audit
from .auth import Principal
from .clock import Clock, system_clock
from .cra_provider import ProviderInfo, ProviderService, checked_text
from .vuln_scan import lock_tenant

__all__ = ["AdvisoryService"]

VULN_ID = re.compile(r"^[A-Z][A-Z0-9]*-[A-Za-z0-9._:-]{1,60}\Z")
MAX_CVES = 100
STATES = ("draft", "final", "revised")


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


class AdvisoryService:
    def __init__(self, db: Database, pgp: OpenPgp, secret: bytes, settings: Settings, clock: Clock = system_clock) -> None:
        self.db, self.pgp, self.settings, self.clock = db, pgp, settings, clock
        self.providers = ProviderService(db, pgp, secret, settings, clock)

    # -- input checks -------------------------------------------------------------------------------------------------
    @staticmethod
    def _cves(cves: list[str]) -> list[str]:
        out = sorted({c.strip().upper() if c.strip().upper().startswith("CVE-") else c.strip() for c in cves})
        if not out or len(out) > MAX_CVES:
            raise Invalid(f"an advisory names 1-{MAX_CVES} vulnerabilities (CVE ids such as CVE-2024-3094)")
        bad = [c for c in out if not VULN_ID.match(c)]
        if bad:
            raise Invalid(f"not vulnerability ids: {', '.join(bad)}; give CVE ids such as CVE-2024-3094")
        return out

    @staticmethod
    def _cvss(cvss: dict[str, str] | None, cves: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for cve, vector in (cvss or {}).items():
            key = cve.strip().upper()
            if key not in cves:
                raise Invalid(f"a CVSS vector is given for {cve}, which the advisory does not name")
            try:
                out[key] = cvss_score(vector.strip())[1]["vectorString"]
            except CsafError as e:
                raise Invalid(str(e)) from None
        return out

    @staticmethod
    def _product(s: Session, tid: int, compatible: str) -> CraProduct:
        p = s.scalar(select(CraProduct).where(CraProduct.tenant_id == tid, CraProduct.compatible == compatible))
        if p is None:
            raise NotFound(
                f"no product for compatible {compatible!r}: register it with 'bulkhead cra product set {compatible} "
                "--name NAME --manufacturer M' first (an advisory names the product and its support end)"
            )
        return p

    # -- the document -------------------------------------------------------------------------------------------------
    def _input(
        self,
        s: Session,
        tid: int,
        product: CraProduct,
        cves: list[str],
        cvss: dict[str, str],
        title: str,
        summary: str | None,
        tracking: Tracking,
        provider: ProviderInfo,
        check: bool,
    ) -> AdvisoryInput:
        rels = list(
            s.execute(
                select(Release.id, Release.version, Release.created_at).where(
                    Release.tenant_id == tid, Release.compatible == product.compatible
                )
            )
        )
        ids = [r.id for r in rels]
        scanned = (
            set(s.scalars(select(VulnFinding.release_id).where(VulnFinding.release_id.in_(ids)).distinct())) if ids else set()
        )
        F, V = VulnFinding, VexStatement
        rows = (
            s.execute(
                select(F, V.justification, V.impact_statement, V.action_statement)
                .outerjoin(V, V.id == F.vex_id)
                .where(F.tenant_id == tid, F.release_id.in_(ids), F.cve.in_(cves))
            ).all()
            if ids
            else []
        )
        findings = tuple(
            FindingInfo(
                f.release_id or 0,
                f.cve,
                f.component,
                f.component_version,
                f.status,
                f.severity,
                f.cvss,
                f.fixed_version,
                f.kev,
                just,
                impact,
                action,
            )
            for f, just, impact, action in rows
        )
        if check:
            missing = sorted(set(cves) - {f.cve for f in findings})
            if missing:
                raise Unprocessable(
                    f"no release of {product.compatible!r} has a finding for {', '.join(missing)}: an advisory says which "
                    "releases are affected and fixed, so scan them first ('bulkhead vulns scan') or leave those out"
                )
        descriptions = dict(s.execute(select(VulnCve.cve, VulnCve.description).where(VulnCve.cve.in_(cves))).tuples().all())
        a_tracking = tracking
        return AdvisoryInput(
            publisher=Publisher(
                provider.publisher["name"], provider.publisher["namespace"], provider.publisher.get("contact_details")
            ),
            product=ProductInfo(product.compatible, product.name, product.manufacturer, product.support_end),
            releases=tuple(ReleaseInfo(r.id, r.version, _aware(r.created_at), r.id in scanned) for r in rels),
            findings=findings,
            cves=tuple(CveInfo(c, descriptions.get(c), cvss.get(c)) for c in cves),
            title=title,
            tracking=a_tracking,
            summary=summary,
            self_url=self._json_url(provider, tracking),
            html_url=f"{provider.base}/advisories/{filename(tracking.id).removesuffix('.json')}.html",
            generator_version=__version__,
        )

    @staticmethod
    def _json_url(provider: ProviderInfo, tracking: Tracking) -> str:
        path = directory_path(filename(tracking.id), tracking.initial_release_date)
        return f"{provider.base}/.well-known/csaf/white/{path}"

    @staticmethod
    def _tracking(a: CraAdvisory, status: str, at: dt.datetime) -> Tracking:
        revs = [Revision(str(r["number"]), dt.datetime.fromisoformat(r["date"]), r["summary"]) for r in a.revisions]
        number = str(a.version + 1)
        summary = a.change or ("Initial public release." if a.version == 0 else "Revised.")
        revs.append(Revision(number, at, summary))
        initial = _aware(a.initial_release_date) if a.initial_release_date else at
        return Tracking(a.tracking_id, status, number, tuple(revs), initial, at)

    def _document(self, s: Session, a: CraAdvisory, status: str, at: dt.datetime, origin: str) -> dict[str, Any]:
        provider = self.providers.provider(s, a.tenant_id, origin)
        product = self._product(s, a.tenant_id, a.compatible)
        a_in = self._input(
            s,
            a.tenant_id,
            product,
            list(a.cves),
            dict(a.cvss),
            a.title,
            a.summary,
            self._tracking(a, status, at),
            provider,
            check=False,
        )
        try:
            return build_advisory(a_in)
        except CsafError as e:
            raise Unprocessable(f"advisory {a.tracking_id}: {e}") from None

    # -- management ---------------------------------------------------------------------------------------------------
    def _new_tracking_id(self, s: Session, tid: int, now: dt.datetime) -> str:
        tenant = s.get(Tenant, tid)
        prefix = f"{(tenant.name if tenant else 'BULKHEAD').upper()}-{now.year}-"
        used = s.scalars(
            select(CraAdvisory.tracking_id).where(CraAdvisory.tenant_id == tid, CraAdvisory.tracking_id.startswith(prefix))
        )
        seq = max((int(t.removeprefix(prefix)) for t in used if t.removeprefix(prefix).isdigit()), default=0) + 1
        return f"{prefix}{seq:04d}"

    def preview(
        self,
        who: Principal,
        compatible: str,
        cves: list[str],
        title: str | None,
        summary: str | None,
        cvss: dict[str, str] | None,
        origin: str,
    ) -> dict[str, Any]:
        """The document an advisory with these values would have now (nothing is stored)."""
        who.require("viewer")
        tid = who.require_tenant()
        cves = self._cves(cves)
        vectors = self._cvss(cvss, cves)
        with self.db.session() as s:
            product = self._product(s, tid, compatible)
            now = self.clock()
            a = CraAdvisory(tenant_id=tid, tracking_id=self._new_tracking_id(s, tid, now), version=0, revisions=[], change=None)
            provider = self.providers.provider(s, tid, origin)
            title = checked_text(title, "title", 512) or f"{', '.join(cves)} in {product.name}"
            a_in = self._input(
                s,
                tid,
                product,
                cves,
                vectors,
                title,
                checked_text(summary, "summary"),
                self._tracking(a, "draft", now),
                provider,
                check=True,
            )
            try:
                return build_advisory(a_in)
            except CsafError as e:
                raise Unprocessable(str(e)) from None

    def create(
        self,
        who: Principal,
        compatible: str,
        cves: list[str],
        title: str | None,
        summary: str | None,
        cvss: dict[str, str] | None,
        origin: str,
    ) -> dict[str, Any]:
        """A new draft advisory (checked: the product exists, every CVE has findings on its releases). Operators."""
        who.require("operator")
        tid = who.require_tenant()
        cves = self._cves(cves)
        vectors = self._cvss(cvss, cves)
        summary = checked_text(summary, "summary")
        with self.db.session() as s:
            lock_tenant(s, tid)  # tracking ids are numbered per tenant and year
            product = self._product(s, tid, compatible)
            now = self.clock()
            title = checked_text(title, "title", 512) or f"{', '.join(cves)} in {product.name}"
            a = CraAdvisory(
                tenant_id=tid,
                tracking_id=self._new_tracking_id(s, tid, now),
                compatible=compatible,
                cves=cves,
                title=title,
                summary=summary,
                cvss=vectors,
                change=None,
                state="draft",
                version=0,
                revisions=[],
                created_by=f"{who.kind}:{who.name}",
                created_at=now,
                updated_at=now,
            )
            provider = self.providers.provider(s, tid, origin)
            self._input(s, tid, product, cves, vectors, title, summary, self._tracking(a, "draft", now), provider, check=True)
            s.add(a)
            s.flush()
            doc = self._document(s, a, "draft", now, origin)
            audit.record(s, who, "cra.advisory.create", a.tracking_id, compatible=compatible, cves=cves, title=title)
            return self._json(a, doc)

    def list_advisories(self, who: Principal, state: str | None = None) -> list[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        if state is not None and state not in STATES:
            raise Invalid(f"state must be one of {', '.join(STATES)}")
        with self.db.session() as s:
            q = select(CraAdvisory).where(CraAdvisory.tenant_id == tid)
            if state:
                q = q.where(CraAdvisory.state == state)
            return [self._json(a) for a in s.scalars(q.order_by(CraAdvisory.id.desc()))]

    def _get(self, s: Session, tid: int, aid: int, lock: bool = False) -> CraAdvisory:
        q = select(CraAdvisory).where(CraAdvisory.tenant_id == tid, CraAdvisory.id == aid)
        a = s.scalar(q.with_for_update() if lock else q)
        if a is None:
            raise NotFound(f"no advisory {aid}; see 'bulkhead cra advisory list'")
        return a

    def show(self, who: Principal, aid: int, origin: str) -> dict[str, Any]:
        """One advisory with its working document (the draft of its next version, made from the current data)."""
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            a = self._get(s, tid, aid)
            doc = self._document(s, a, "draft", _aware(a.updated_at), origin) if a.state != "final" else None
            return self._json(a, doc)

    def document(self, who: Principal, aid: int, which: str, origin: str) -> tuple[dict[str, Any], bytes]:
        """The published document's bytes (which="published") or the draft's (which="draft")."""
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            a = self._get(s, tid, aid)
            if which == "published":
                if a.published is None:
                    raise NotFound(f"advisory {a.tracking_id} is not published yet: 'bulkhead cra advisory publish {aid}'")
                data = a.published.encode()
                return self._json(a), data
            doc = self._document(s, a, "draft", _aware(a.updated_at), origin)
            return self._json(a), document_bytes(doc)

    def revise(self, who: Principal, aid: int, fields: dict[str, Any], origin: str) -> dict[str, Any]:
        """Change title, summary, CVEs or CVSS vectors and say what changed; the document is made again from the
        current findings and VEX (a fix released since shows). A published advisory gets a new draft version."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            a = self._get(s, tid, aid, lock=True)
            cves = self._cves(fields["cves"]) if fields.get("cves") is not None else list(a.cves)
            if "cvss" in fields or fields.get("cves") is not None:
                given = fields.get("cvss")
                vectors = self._cvss(given, cves) if given is not None else {k: v for k, v in a.cvss.items() if k in cves}
            else:
                vectors = dict(a.cvss)
            title = checked_text(fields.get("title"), "title", 512) or a.title
            summary = checked_text(fields["summary"], "summary") if "summary" in fields else a.summary
            change = checked_text(fields.get("change"), "change", 1000)
            if a.version > 0 and not change:
                raise Invalid("say what this revision changes (change), e.g. 'Fixed release 2.0 available'")
            product = self._product(s, tid, a.compatible)
            now = self.clock()
            provider = self.providers.provider(s, tid, origin)
            self._input(s, tid, product, cves, vectors, title, summary, self._tracking(a, "draft", now), provider, check=True)
            a.cves, a.cvss, a.title, a.summary = cves, vectors, title, summary
            a.change = change or a.change
            a.state = "draft" if a.version == 0 else "revised"
            a.updated_at = now
            s.flush()
            doc = self._document(s, a, "draft", now, origin)
            audit.record(s, who, "cra.advisory.revise", a.tracking_id, cves=cves, title=title, change=change)
            return self._json(a, doc)

    def publish(self, who: Principal, aid: int, origin: str) -> dict[str, Any]:
        """Publish the draft as the next final version: its bytes, hashes and signature are what the provider serves."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            a = self._get(s, tid, aid, lock=True)
            if a.state == "final":
                raise Conflict(
                    f"advisory {a.tracking_id} version {a.version} is published and unchanged since: revise it first "
                    f"('bulkhead cra advisory revise {aid} --change TEXT')"
                )
            now = self.clock()
            doc = self._document(s, a, "final", now, origin)
            data = document_bytes(doc)
            provider = self.providers.provider(s, tid, origin)
            signed = self.providers.sign(s, provider, who, data)
            a.version += 1
            a.revisions = [
                *a.revisions,
                {
                    "number": a.version,
                    "date": now.isoformat(),
                    "summary": doc["document"]["tracking"]["revision_history"][-1]["summary"],
                },
            ]
            a.initial_release_date = a.initial_release_date or now
            a.current_release_date = now
            a.published = data.decode()
            a.signer, a.signature = signed or (None, None)
            a.sha256, a.sha512 = hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest()
            a.state, a.change, a.updated_at = "final", None, now
            s.flush()
            audit.record(
                s,
                who,
                "cra.advisory.publish",
                a.tracking_id,
                version=a.version,
                sha256=a.sha256,
                signed_by=a.signer,
                url=self._json_url(provider, self._tracking_of(a)),
            )
            return self._json(a) | {"url": self._json_url(provider, self._tracking_of(a))}

    @staticmethod
    def _tracking_of(a: CraAdvisory) -> Tracking:
        initial = _aware(a.initial_release_date or a.created_at)
        return Tracking(a.tracking_id, a.state, str(a.version), (), initial, _aware(a.current_release_date or initial))

    @staticmethod
    def _json(a: CraAdvisory, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": a.id,
            "tracking_id": a.tracking_id,
            "file": filename(a.tracking_id),
            "compatible": a.compatible,
            "cves": list(a.cves),
            "title": a.title,
            "summary": a.summary,
            "cvss": dict(a.cvss),
            "state": a.state,
            "version": a.version,
            "pending_change": a.change,
            "revisions": list(a.revisions),
            "initial_release_date": _aware(a.initial_release_date).isoformat() if a.initial_release_date else None,
            "current_release_date": _aware(a.current_release_date).isoformat() if a.current_release_date else None,
            "sha256": a.sha256,
            "signed_by": a.signer,
            "created_by": a.created_by,
            "created_at": _aware(a.created_at).isoformat(),
            "updated_at": _aware(a.updated_at).isoformat(),
        }
        if doc is not None:
            out["document"] = doc
        return out

    # -- read by others -------------------------------------------------------------------------------------------
    def published_rows(self, s: Session, tid: int) -> list[CraAdvisory]:
        return list(
            s.scalars(
                select(CraAdvisory)
                .where(CraAdvisory.tenant_id == tid, CraAdvisory.published.is_not(None))
                .order_by(CraAdvisory.tracking_id)
            )
        )

    def count(self, s: Session, tid: int) -> int:
        return int(s.scalar(select(func.count()).select_from(CraAdvisory).where(CraAdvisory.tenant_id == tid)) or 0)
