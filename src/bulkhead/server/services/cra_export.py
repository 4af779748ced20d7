"""Gather one product's technical documentation (CRA Annex VII) and hand it to bulkhead.cra.docexport (admin, operator).

One read of the database gathers the records (product, releases, findings, scan runs, VEX, cases, keyring, rollouts, the
devices' security log) into members; the uploaded SBOMs stay in the artifact store and are read in chunks while the
archive streams. Every value that could vary between two exports of the same data is taken from the data: document
times are the records' times, the archive's mtime is the newest record's time, ids are derived from content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bulkhead.cra import CraError
from bulkhead.cra.csaf import filename
from bulkhead.cra.docexport import Member, bytes_member, iter_archive, json_member
from bulkhead.cra.sbom_export import ReleaseMeta, export_sbom

from ..advisory_models import CraAdvisory
from ..cra_models import CraCase, CraCaseEntry, CraProduct
from ..db import Database
from ..errors import NotFound, Unprocessable
from ..models import Action, Device, DeviceEvent, Release, ReleaseSbom, Rollout, Tenant
from ..store import ArtifactStore
from ..vuln_models import VexStatement, VulnFinding, VulnScanRun
from . import security_events, vex
from .auth import Principal
from .cra_cases import CaseService
from .releases import release_json
from .sbom_export import _merged
from .vuln_match import release_components

__all__ = ["ARCHIVE_FORMAT", "TechDocExport", "export_product"]

ARCHIVE_FORMAT = "bulkhead-cra-techdoc/1"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TechDocExport:
    filename: str
    chunks: Iterator[bytes]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text) or "_"


def _iso(t: dt.datetime | dt.date | None) -> str | None:
    return t.isoformat() if t else None


def _content_urn(kind: str, value: Any) -> str:
    """A document id derived from its content (the same statements give the same id), in place of a random one."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'urn:bulkhead:{kind}:{digest}')}"


def _file_member(path: str, store: ArtifactStore, sha256: str, description: str) -> Member:
    def chunks() -> Iterator[bytes]:
        with store.open(sha256) as f:
            while block := f.read(_CHUNK):
                yield block

    return Member(path, store.stat(sha256).size, chunks, description)


def _certificates(pem: str | None) -> list[dict[str, Any]]:
    if not pem:
        return []
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return [{"error": "the tenant keyring cannot be read as PEM certificates"}]
    return [
        {
            "subject": c.subject.rfc4514_string(),
            "issuer": c.issuer.rfc4514_string(),
            "serial": format(c.serial_number, "x"),
            "sha256_fingerprint": c.fingerprint(hashes.SHA256()).hex(),
            "not_before": c.not_valid_before_utc.isoformat(),
            "not_after": c.not_valid_after_utc.isoformat(),
        }
        for c in certs
    ]


_VERIFICATION = """\
Releases are RAUC bundles (or SWUpdate .swu images) signed by the manufacturer with a key whose certificate chains to
the tenant keyring below. The server verifies every upload against that keyring (CMS signature, certificate chain,
key usage `{purpose}`) before it stores it; a bundle that fails is refused and nothing is stored. Devices verify the
bundle again with RAUC against their own keyring before installing it into the inactive A/B slot, boot it, run
their health check and mark the slot good, or roll back to the previous slot.

Updates reach devices through rollouts: a release to a target set of devices in phases (groups or percentages),
each with success and error thresholds; a rollout pauses when a phase's errors exceed its threshold and resumes only
when an operator accepts them.
"""


def _process_markdown(doc: dict[str, Any]) -> str:
    lines = [f"# Update and signing process: {doc['product']['name']} ({doc['product']['compatible']})", ""]
    lines += ["## Verification of releases", "", doc["verification"], "## Keyring certificates", ""]
    if not doc["keyring"]:
        lines.append("The tenant has no keyring: no release can be uploaded.")
    for c in doc["keyring"]:
        lines.append(
            f"- `{c.get('subject')}`: SHA-256 `{c.get('sha256_fingerprint')}`,"
            f" valid from {c.get('not_before')} to {c.get('not_after')}"
        )
    lines += ["", "## Rollouts of the product's releases", ""]
    if not doc["rollouts"]:
        lines.append("No rollout of this product's releases.")
    for r in doc["rollouts"]:
        phases = ", ".join(p.get("name") or str(i) for i, p in enumerate(r["phases"]))
        lines.append(
            f"- {r['name']}: release {r['release_version']}, status {r['status']}, phase {r['current_phase']}"
            f" of [{phases}], actions {json.dumps(r['actions'], sort_keys=True)}, created {r['created_at']} by {r['created_by']}"
        )
    return "\n".join(lines) + "\n"


class _Gather:
    """The members of one product's archive, read in one session."""

    def __init__(self, s: Session, store: ArtifactStore, tid: int, product: CraProduct) -> None:
        self.s, self.store, self.tid, self.p = s, store, tid, product
        self.times: list[dt.datetime] = [product.updated_at]
        self.members: list[Member] = []

    def _add(self, path: str, value: Any, description: str) -> None:
        self.members.append(json_member(path, value, description))

    def run(self) -> list[Member]:
        s, p = self.s, self.p
        rels = list(
            s.scalars(
                select(Release)
                .where(Release.tenant_id == self.tid, Release.compatible == p.compatible)
                .order_by(Release.created_at, Release.id)
            )
        )
        self.times += [r.created_at for r in rels]
        self._add(
            "product.json",
            {
                "compatible": p.compatible,
                "name": p.name,
                "manufacturer": p.manufacturer,
                "support_end": _iso(p.support_end),
                "created_at": _iso(p.created_at),
                "updated_at": _iso(p.updated_at),
                "releases": [
                    {"id": r.id, "version": r.version, "sha256": r.sha256, "created_at": _iso(r.created_at)} for r in rels
                ],
            },
            "the product record and its support period (Annex II, VII)",
        )
        for r in rels:
            self._release(r)
        self._history([r.id for r in rels])
        self._vex()
        self._cases(rels)
        self._advisories()
        self._process(rels)
        self._security()
        return self.members

    def _advisories(self) -> None:
        """The product's published CSAF advisories, the exact bytes the provider serves (drafts are left out)."""
        rows = self.s.scalars(
            select(CraAdvisory)
            .where(
                CraAdvisory.tenant_id == self.tid,
                CraAdvisory.compatible == self.p.compatible,
                CraAdvisory.published.is_not(None),
            )
            .order_by(CraAdvisory.tracking_id)
        )
        for a in rows:
            if a.current_release_date is not None:
                self.times.append(a.current_release_date)
            self.members.append(
                bytes_member(
                    f"advisories/{filename(a.tracking_id)}",
                    (a.published or "").encode(),
                    f"CSAF 2.0 advisory {a.tracking_id}, version {a.version} as published",
                )
            )

    def _release(self, r: Release) -> None:
        base = f"releases/{_safe(r.version)}-{r.id}"
        sboms = list(self.s.scalars(select(ReleaseSbom).where(ReleaseSbom.release_id == r.id).order_by(ReleaseSbom.format)))
        self._add(
            f"{base}/release.json",
            release_json(r, sboms),  # as the API shows it
            "the release as uploaded: bundle digest, signer, upload time, its SBOMs",
        )
        docs = []
        for sb in sboms:
            self.times.append(sb.created_at)
            try:
                self.members.append(
                    _file_member(
                        f"{base}/sbom/uploaded-{_safe(sb.format)}.json",
                        self.store,
                        sb.sha256,
                        f"the {sb.format} SBOM as uploaded",
                    )
                )
                with self.store.open(sb.sha256) as f:
                    docs.append(json.load(f))
            except (OSError, ValueError) as e:
                raise Unprocessable(f"release {r.id}: a stored SBOM cannot be read ({e}); attach it again") from e
        if docs:
            meta = ReleaseMeta(
                r.compatible, r.version, max([r.created_at, *(sb.created_at for sb in sboms)]), r.sha256, r.compatible
            )
            try:
                components = _merged(release_components(docs))
                for fmt, name in (("cyclonedx", "export.cdx.json"), ("spdx", "export.spdx.json")):
                    text = export_sbom(fmt, meta, components)
                    self.members.append(
                        bytes_member(
                            f"{base}/sbom/{name}", text.encode(), f"the server's {fmt} export of the release's components"
                        )
                    )
            except CraError as e:
                raise Unprocessable(f"release {r.id}: its SBOM cannot be exported: {e}; attach a valid SBOM") from e
        findings = self.s.scalars(
            select(VulnFinding)
            .where(VulnFinding.release_id == r.id)
            .order_by(VulnFinding.cve, VulnFinding.component, VulnFinding.component_version, VulnFinding.id)
        )
        self._add(
            f"{base}/findings.json",
            [
                {
                    "cve": f.cve,
                    "component": f.component,
                    "component_version": f.component_version,
                    "purl": f.purl,
                    "status": f.status,
                    "matcher_status": f.matcher_status,
                    "severity": f.severity,
                    "cvss": f.cvss,
                    "epss": f.epss,
                    "kev": f.kev,
                    "kev_date": _iso(f.kev_date),
                    "fixed_version": f.fixed_version,
                    "source": f.source,
                    "reason": f.reason,
                    "vex_id": f.vex_id,
                    "run_id": f.run_id,
                }
                for f in findings
            ],
            "the release's vulnerability findings from the latest scan",
        )

    def _history(self, release_ids: list[int]) -> None:
        counts: dict[int, int] = {}
        if release_ids:
            q = (
                select(VulnFinding.run_id, func.count())
                .where(VulnFinding.release_id.in_(release_ids))
                .group_by(VulnFinding.run_id)
            )
            counts = {int(run): int(n) for run, n in self.s.execute(q)}
        runs = list(self.s.scalars(select(VulnScanRun).where(VulnScanRun.tenant_id == self.tid).order_by(VulnScanRun.id)))
        self.times += [t for run in runs for t in (run.started_at, run.finished_at) if t]
        self._add(
            "findings-history.json",
            [
                {
                    "id": run.id,
                    "kind": run.kind,
                    "actor": run.actor,
                    "started_at": _iso(run.started_at),
                    "finished_at": _iso(run.finished_at),
                    "status": run.status,
                    "error": run.error,
                    "feeds": run.feeds,
                    "counts": run.counts,
                    "product_findings_kept": counts.get(run.id, 0),
                }
                for run in runs
            ],
            "every vulnerability scan run with the feed versions it read",
        )

    def _vex(self) -> None:
        rows = list(
            self.s.scalars(
                select(VexStatement).where(VexStatement.tenant_id == self.tid, VexStatement.compatible == self.p.compatible)
            )
        )
        newest = max((v.at for v in rows), default=self.p.updated_at)
        self.times.append(newest)
        author = "bulkhead cra export"
        ov = vex.openvex(self.s, self.tid, self.p.compatible, author)
        ov["timestamp"] = newest.isoformat()
        ov["@id"] = _content_urn("openvex", ov["statements"])
        self._add("vex/openvex.json", ov, "the product's VEX statements (OpenVEX 0.2.0)")
        cdx = vex.cyclonedx(self.s, self.tid, self.p.compatible, author)
        cdx["serialNumber"] = _content_urn("cyclonedx-vex", cdx.get("vulnerabilities", []))
        cdx.setdefault("metadata", {})["timestamp"] = newest.isoformat()
        self._add("vex/cyclonedx-vex.json", cdx, "the product's VEX statements (CycloneDX 1.6)")

    def _cases(self, rels: list[Release]) -> None:
        cves = (
            set(self.s.scalars(select(VulnFinding.cve).where(VulnFinding.release_id.in_([r.id for r in rels]))))
            if rels
            else set()
        )
        rows = list(self.s.scalars(select(CraCase).where(CraCase.tenant_id == self.tid).order_by(CraCase.id)))
        mine = [c for c in rows if c.compatible == self.p.compatible or (c.compatible is None and cves & set(c.cves or []))]
        for c in mine:
            self.times.append(c.updated_at)
        now = max(self.times)
        for c in mine:
            entries = self.s.scalars(
                select(CraCaseEntry).where(CraCaseEntry.case_id == c.id).order_by(CraCaseEntry.seq, CraCaseEntry.id)
            )
            log = []
            for e in entries:
                self.times.append(e.at)
                log.append({**CaseService._entry_json(e), "payload": e.payload})
            case = CaseService._json(c, now)
            case.pop("overdue")  # relative to the time of reading, not part of the record
            self._add(
                f"cases/case-{c.id}.json",
                {**case, "log": log},
                "an Article 14 case: deadlines, log, submissions with the fields sent, CSIRT requests",
            )

    def _process(self, rels: list[Release]) -> None:
        tenant = self.s.get(Tenant, self.tid)
        versions = {r.id: r.version for r in rels}
        rollouts = (
            list(
                self.s.scalars(
                    select(Rollout).where(Rollout.release_id.in_(list(versions))).order_by(Rollout.created_at, Rollout.id)
                )
            )
            if versions
            else []
        )
        out = []
        for ro in rollouts:
            self.times.append(ro.updated_at)
            q = (
                select(Action.status, func.count())
                .where(Action.rollout_id == ro.id, Action.superseded.is_(False))
                .group_by(Action.status)
            )
            out.append(
                {
                    "name": ro.name,
                    "release_version": versions.get(ro.release_id or 0),
                    "status": ro.status,
                    "phases": ro.phases,
                    "current_phase": ro.current_phase,
                    "action_type": ro.action_type,
                    "target": ro.target,
                    "window": ro.window,
                    "requires_approval": ro.requires_approval,
                    "pause_reason": ro.pause_reason,
                    "created_by": ro.created_by,
                    "created_at": _iso(ro.created_at),
                    "updated_at": _iso(ro.updated_at),
                    "actions": {str(st): int(n) for st, n in self.s.execute(q)},
                }
            )
        purpose = tenant.keyring_check_purpose if tenant else "smimesign"
        doc = {
            "product": {"compatible": self.p.compatible, "name": self.p.name},
            "verification": _VERIFICATION.format(purpose=purpose),
            "keyring": _certificates(tenant.keyring_pem if tenant else None),
            "rollouts": out,
        }
        self._add("process/update-and-signing.json", doc, "the update and signing process: keyring, verification, rollouts")
        self.members.append(bytes_member("process/update-and-signing.md", _process_markdown(doc).encode(), "the same, readable"))

    def _security(self) -> None:
        """The product's devices' security log (Annex I): every security event they reported, counted per kind."""
        q = security_events.rows_of().where(DeviceEvent.tenant_id == self.tid, Device.compatible == self.p.compatible)
        events = []
        for row in self.s.execute(q.order_by(DeviceEvent.id)):
            self.times.append(row[0].at)
            events.append(security_events.event_json(row))
        counts: dict[str, int] = {}
        for e in events:
            counts[e["kind"]] = counts.get(e["kind"], 0) + 1
        doc = {"kinds": list(security_events.KINDS), "counts": dict(sorted(counts.items())), "events": events}
        self._add("security/device-security-log.json", doc, "the security events the product's devices reported (Annex I)")


def export_product(db: Database, store: ArtifactStore, who: Principal, compatible: str) -> TechDocExport:
    """The product's technical documentation as a tar.gz stream (operators and admins)."""
    who.require("operator")
    tid = who.require_tenant()
    with db.session() as s:
        product = s.scalar(select(CraProduct).where(CraProduct.tenant_id == tid, CraProduct.compatible == compatible))
        if product is None:
            raise NotFound(
                f"no product for compatible {compatible!r}: register it first with "
                f"'bulkhead cra product set {compatible} --name NAME --manufacturer M' (see 'bulkhead cra product list')"
            )
        g = _Gather(s, store, tid, product)
        members = g.run()
        newest = max(g.times)
        header = {
            "format": ARCHIVE_FORMAT,
            "compatible": product.compatible,
            "product": product.name,
            "data_as_of": newest.isoformat(),
        }
    mtime = int((newest - _EPOCH).total_seconds())
    return TechDocExport(f"{_safe(compatible)}-techdoc.tar.gz", iter_archive(members, mtime, header))
