"""CSAF 2.0 security advisories, pure: a product's releases, findings and VEX decisions in, one CSAF document out.

The product tree is vendor (manufacturer) → product name → product_version (one branch per release, its product id
derived from the compatible and the version). For every vulnerability each release scanned is placed in one
product_status: a release with a finding for it by the finding's effective status (a VEX statement's, else the
matcher's; affected → known_affected, not_affected → known_not_affected, fixed → fixed, under_investigation); a
scanned release without one that follows an affected release is `fixed` (its components moved past the flaw). The
remediation names the release version that fixes it (`vendor_fix`), or says none is available yet. VEX
justifications become CSAF flags, impact statements threats, action statements mitigations. The product's support
end is a document note. The same input gives the same document, byte for byte (:func:`document_bytes`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import CraError
from .vex_terms import CYCLONEDX_TO_OPENVEX

__all__ = [
    "CSAF_STATUS",
    "AdvisoryInput",
    "CsafError",
    "CveInfo",
    "FindingInfo",
    "ProductInfo",
    "Publisher",
    "ReleaseInfo",
    "Revision",
    "Tracking",
    "build_advisory",
    "cvss_score",
    "document_bytes",
    "filename",
    "product_id",
]

CVE_RE = re.compile(r"^CVE-[0-9]{4}-[0-9]{4,}$")
TLP_URL = "https://www.first.org/tlp/"
# finding status → CSAF product_status, and which wins when a release has several findings for one vulnerability
CSAF_STATUS = {
    "affected": "known_affected",
    "under_investigation": "under_investigation",
    "fixed": "fixed",
    "not_affected": "known_not_affected",
}
_RANK = {"affected": 3, "under_investigation": 2, "fixed": 1, "not_affected": 0}
_SEVERITIES = ("none", "low", "medium", "high", "critical")
_FLAG_LABELS = {
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
}


class CsafError(CraError):
    """An advisory cannot be made from what was given (the message says what to change)."""


@dataclass(frozen=True)
class Publisher:
    name: str
    namespace: str  # a URL of the publisher (CSAF: the publisher's namespace)
    contact_details: str | None = None
    category: str = "vendor"


@dataclass(frozen=True)
class ProductInfo:
    compatible: str
    name: str
    manufacturer: str
    support_end: dt.date | None


@dataclass(frozen=True)
class ReleaseInfo:
    id: int
    version: str
    created_at: dt.datetime
    scanned: bool = True  # a scan has looked at it (else its status for a vulnerability is not known)


@dataclass(frozen=True)
class FindingInfo:
    release_id: int
    cve: str
    component: str
    component_version: str
    status: str  # effective: affected | not_affected | fixed | under_investigation
    severity: str = "unknown"
    cvss: float | None = None  # a base score without its vector (not a CSAF score; said in a note)
    fixed_version: str | None = None
    kev: bool = False
    justification: str | None = None  # of the VEX statement that decided the status
    impact: str | None = None
    action: str | None = None


@dataclass(frozen=True)
class CveInfo:
    cve: str
    description: str | None = None
    cvss_vector: str | None = None  # CVSS:3.0/… or CVSS:3.1/… (scored here), or a CVSS v2 vector
    title: str | None = None


@dataclass(frozen=True)
class Revision:
    number: str
    date: dt.datetime
    summary: str


@dataclass(frozen=True)
class Tracking:
    id: str
    status: str  # draft | interim | final
    version: str
    revisions: tuple[Revision, ...]
    initial_release_date: dt.datetime
    current_release_date: dt.datetime


@dataclass(frozen=True)
class AdvisoryInput:
    publisher: Publisher
    product: ProductInfo
    releases: tuple[ReleaseInfo, ...]
    findings: tuple[FindingInfo, ...]
    cves: tuple[CveInfo, ...]
    title: str
    tracking: Tracking
    summary: str | None = None
    self_url: str | None = None  # where the published JSON is
    html_url: str | None = None
    generator_version: str | None = None
    references: tuple[tuple[str, str], ...] = field(default=())  # (url, summary)


def filename(tracking_id: str) -> str:
    """The file name CSAF 2.0 (section 5.1) gives a document: its tracking id in lower case, every character other
    than + - a-z 0-9 replaced by _, and .json."""
    return re.sub(r"[^+\-a-z0-9]", "_", tracking_id.lower()) + ".json"


def product_id(product: ProductInfo, release: ReleaseInfo) -> str:
    """A release's CSAF product id: the compatible and version, made of safe characters."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{product.compatible}-{release.version}")


def _iso(t: dt.datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def cvss_score(vector: str) -> tuple[str, dict[str, Any]]:
    """The CSAF `scores` member for a CVSS vector ("cvss_v3" or "cvss_v2", scored with the `cvss` library so that
    base score and severity agree with the vector); CsafError when it is not a valid vector."""
    import cvss as cvsslib  # the `cra` extra's CVSS library; imported here so this module loads without it

    try:
        if vector.startswith("CVSS:3."):
            c3 = cvsslib.CVSS3(vector)
            version = vector.split("/", 1)[0].removeprefix("CVSS:")
            if version not in ("3.0", "3.1"):
                raise CsafError(f"CVSS vector {vector!r}: version {version} is not CVSS 3.0 or 3.1")
            return "cvss_v3", {
                "version": version,
                "vectorString": c3.clean_vector(),
                "baseScore": float(c3.scores()[0]),
                "baseSeverity": str(c3.severities()[0]).upper(),
            }
        if vector.startswith("CVSS:"):
            raise CsafError(f"CVSS vector {vector!r}: CSAF 2.0 takes CVSS 3.0, 3.1 or 2.0 vectors")
        c2 = cvsslib.CVSS2(vector)
        return "cvss_v2", {"version": "2.0", "vectorString": c2.clean_vector(), "baseScore": float(c2.scores()[0])}
    except CsafError:
        raise
    except Exception as e:  # the library raises its own CVSSError subclasses
        raise CsafError(
            f"{vector!r} is not a valid CVSS vector ({e}); e.g. CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
        ) from None


def _release_status(findings: Iterable[FindingInfo]) -> str:
    return max((f.status for f in findings), key=lambda s: _RANK.get(s, 0))


class _Builder:
    def __init__(self, a: AdvisoryInput) -> None:
        self.a = a
        self.releases = sorted(a.releases, key=lambda r: (r.created_at, r.id))
        self.pids = {r.id: product_id(a.product, r) for r in self.releases}
        if len(set(self.pids.values())) != len(self.pids):  # two versions that differ only in unsafe characters
            self.pids = {r.id: f"{pid}-{r.id}" for r, pid in zip(self.releases, self.pids.values(), strict=True)}
        self.order = {r.id: i for i, r in enumerate(self.releases)}

    def product_tree(self) -> dict[str, Any]:
        p = self.a.product
        versions = [
            {
                "category": "product_version",
                "name": r.version,
                "product": {"name": f"{p.name} {r.version}", "product_id": self.pids[r.id]},
            }
            for r in self.releases
        ]
        return {
            "branches": [
                {
                    "category": "vendor",
                    "name": p.manufacturer,
                    "branches": [{"category": "product_name", "name": p.name, "branches": versions}],
                }
            ]
        }

    def statuses(self, cve: str) -> dict[int, str]:
        """Release id → finding status for one vulnerability (releases whose status is not known are absent)."""
        by_release: dict[int, list[FindingInfo]] = {}
        for f in self.a.findings:
            if f.cve == cve and f.release_id in self.order:
                by_release.setdefault(f.release_id, []).append(f)
        out: dict[int, str] = {}
        seen_affected = False
        for r in self.releases:
            if r.id in by_release:
                out[r.id] = _release_status(by_release[r.id])
                seen_affected = seen_affected or out[r.id] == "affected"
            elif r.scanned and seen_affected:
                out[r.id] = "fixed"
        return out

    def fixing_release(self, statuses: dict[int, str]) -> ReleaseInfo | None:
        """The first release that is fixed after the last affected one (the version to update to)."""
        affected = [self.order[rid] for rid, st in statuses.items() if st == "affected"]
        if not affected:
            return None
        last = max(affected)
        fixed = [r for r in self.releases if self.order[r.id] > last and statuses.get(r.id) in ("fixed", "not_affected")]
        return fixed[0] if fixed else None

    def vulnerability(self, info: CveInfo) -> dict[str, Any]:
        a, p = self.a, self.a.product
        statuses = self.statuses(info.cve)
        findings = sorted(
            (f for f in a.findings if f.cve == info.cve and f.release_id in self.order),
            key=lambda f: (self.order[f.release_id], f.component, f.component_version, f.status),
        )
        v: dict[str, Any] = {}
        if CVE_RE.match(info.cve):
            v["cve"] = info.cve
        else:
            system = info.cve.split("-", 1)[0] if "-" in info.cve else "bulkhead"
            v["ids"] = [{"system_name": system, "text": info.cve}]
        if info.title:
            v["title"] = info.title
        groups: dict[str, list[str]] = {}
        for rid, st in statuses.items():
            groups.setdefault(CSAF_STATUS.get(st, "under_investigation"), []).append(self.pids[rid])
        v["product_status"] = {k: sorted(ids) for k, ids in sorted(groups.items())}
        notes = [
            {
                "category": "description",
                "title": "Description",
                "text": info.description or f"{info.cve}: see the references for its description.",
            }
        ]
        components = sorted({(f.component, f.component_version) for f in findings if f.status == "affected"})
        if components:
            notes.append(
                {
                    "category": "details",
                    "title": "Affected components",
                    "text": "; ".join(f"{name} {version}" for name, version in components),
                }
            )
        scored = sorted({(f.cvss, f.severity) for f in findings if f.cvss is not None}, key=lambda t: (-(t[0] or 0), t[1]))
        if scored and not info.cvss_vector:
            notes.append(
                {
                    "category": "other",
                    "title": "Severity",
                    "text": f"CVSS base score {scored[0][0]} ({scored[0][1]}) as the vulnerability feeds give it.",
                }
            )
        if any(f.kev for f in findings):
            notes.append(
                {
                    "category": "other",
                    "title": "Known exploited",
                    "text": "Listed in CISA's Known Exploited Vulnerabilities catalog: it is exploited in the wild.",
                }
            )
        v["notes"] = notes
        v["references"] = (
            [{"category": "external", "summary": f"{info.cve} at cve.org", "url": f"https://www.cve.org/CVERecord?id={info.cve}"}]
            if CVE_RE.match(info.cve)
            else [
                {"category": "external", "summary": f"{info.cve} at OSV.dev", "url": f"https://osv.dev/vulnerability/{info.cve}"}
            ]
        )
        affected_ids = sorted(groups.get("known_affected", []))
        if info.cvss_vector:
            targets = affected_ids or sorted(groups.get("fixed", []))
            if targets:
                kind, score = cvss_score(info.cvss_vector)
                v["scores"] = [{kind: score, "products": targets}]
        remediations = []
        if affected_ids:
            fix = self.fixing_release(statuses)
            if fix is not None:
                remediations.append(
                    {
                        "category": "vendor_fix",
                        "details": f"Update to {p.name} {fix.version} or later.",
                        "product_ids": affected_ids,
                    }
                )
            else:
                remediations.append(
                    {
                        "category": "none_available",
                        "details": f"No release of {p.name} fixes this yet; this advisory is revised when one does.",
                        "product_ids": affected_ids,
                    }
                )
            actions = sorted({f.action for f in findings if f.action and f.status == "affected"})
            for text in actions:
                ids = sorted({self.pids[f.release_id] for f in findings if f.action == text and f.status == "affected"})
                remediations.append({"category": "mitigation", "details": text, "product_ids": ids})
        if remediations:
            v["remediations"] = remediations
        flags, threats = self._not_affected(findings, statuses)
        if flags:
            v["flags"] = flags
        if threats:
            v["threats"] = threats
        return v

    def _not_affected(
        self, findings: list[FindingInfo], statuses: dict[int, str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Flags (one VEX justification per product) and impact threats of the known_not_affected releases."""
        label_of: dict[str, str] = {}
        impacts: dict[str, set[str]] = {}
        for f in findings:
            if statuses.get(f.release_id) != "not_affected" or f.status != "not_affected":
                continue
            pid = self.pids[f.release_id]
            label = CYCLONEDX_TO_OPENVEX.get(f.justification or "", f.justification or "")
            if label in _FLAG_LABELS and (pid not in label_of or label < label_of[pid]):
                label_of[pid] = label
            if f.impact:
                impacts.setdefault(f.impact, set()).add(pid)
        by_label: dict[str, list[str]] = {}
        for pid, label in label_of.items():
            by_label.setdefault(label, []).append(pid)
        flags = [{"label": label, "product_ids": sorted(ids)} for label, ids in sorted(by_label.items())]
        threats = [{"category": "impact", "details": text, "product_ids": sorted(ids)} for text, ids in sorted(impacts.items())]
        return flags, threats

    def document(self) -> dict[str, Any]:
        a, p, t = self.a, self.a.product, self.a.tracking
        if not a.cves:
            raise CsafError("an advisory needs at least one vulnerability")
        if not self.releases:
            raise CsafError(f"product {p.name!r} has no release: an advisory names the releases it is about")
        vulns = [self.vulnerability(c) for c in sorted(a.cves, key=lambda c: c.cve)]
        notes: list[dict[str, Any]] = []
        notes.append(
            {
                "category": "summary",
                "title": "Summary",
                "text": a.summary
                or f"{', '.join(sorted(c.cve for c in a.cves))} in {p.name} by {p.manufacturer}: affected and fixed releases.",
            }
        )
        if p.support_end is not None:
            support = f"{p.name} receives security updates until {p.support_end.isoformat()} (its support period ends then)."
        else:
            support = f"The end of the support period of {p.name} has not been set by the manufacturer."
        notes.append({"category": "general", "title": "Support period", "text": support})
        severities = [f.severity for f in a.findings if f.status == "affected" and f.severity in _SEVERITIES]
        publisher: dict[str, Any] = {
            "category": a.publisher.category,
            "name": a.publisher.name,
            "namespace": a.publisher.namespace,
        }
        if a.publisher.contact_details:
            publisher["contact_details"] = a.publisher.contact_details
        tracking: dict[str, Any] = {
            "current_release_date": _iso(t.current_release_date),
            "generator": {"date": _iso(t.current_release_date), "engine": {"name": "Bulkhead"}},
            "id": t.id,
            "initial_release_date": _iso(t.initial_release_date),
            "revision_history": [
                {"date": _iso(r.date), "number": r.number, "summary": r.summary}
                for r in sorted(t.revisions, key=lambda r: (int(r.number), r.date))
            ],
            "status": t.status,
            "version": t.version,
        }
        if a.generator_version:
            tracking["generator"]["engine"]["version"] = a.generator_version
        refs = []
        if a.self_url:
            refs.append({"category": "self", "summary": "This advisory (CSAF)", "url": a.self_url})
        if a.html_url:
            refs.append({"category": "self", "summary": "This advisory (HTML)", "url": a.html_url})
        refs += [{"category": "external", "summary": s, "url": u} for u, s in sorted(a.references)]
        document: dict[str, Any] = {
            "category": "csaf_security_advisory",
            "csaf_version": "2.0",
            "distribution": {"tlp": {"label": "WHITE", "url": TLP_URL}},
            "lang": "en",
            "notes": notes,
            "publisher": publisher,
            "title": a.title,
            "tracking": tracking,
        }
        if severities:
            document["aggregate_severity"] = {"text": max(severities, key=_SEVERITIES.index)}
        if refs:
            document["references"] = refs
        return {"document": document, "product_tree": self.product_tree(), "vulnerabilities": vulns}


def build_advisory(a: AdvisoryInput) -> dict[str, Any]:
    """The CSAF 2.0 document (category csaf_security_advisory) for the input; CsafError when none can be made."""
    for r in a.tracking.revisions:
        if not r.number.isdigit():
            raise CsafError(f"revision number {r.number!r} is not an integer version (1, 2, …)")
    if not a.tracking.version.isdigit():
        raise CsafError(f"document version {a.tracking.version!r} is not an integer version")
    return _Builder(a).document()


def document_bytes(doc: dict[str, Any]) -> bytes:
    """The published bytes of a document: JSON with sorted keys, two-space indent, UTF-8, a final newline."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
