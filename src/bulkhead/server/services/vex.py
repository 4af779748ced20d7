"""VEX statements: a triage decision per product (compatible) and CVE, optionally for one component.

A statement applies at once to every finding of the product's releases and devices (and to later scans): the
finding keeps what the matcher said (`matcher_status`) and shows the statement's status, so "not_affected" or
"fixed" takes the CVE out of the exposure while the record stays. A statement for a component records the version
it was triaged against and applies while the component has that version (vex_apply has the rules). Justifications
use the CycloneDX (`code_not_reachable`, …) or the OpenVEX vocabulary (`vulnerable_code_not_in_execute_path`, …);
documents come and go as OpenVEX 0.2.0 or CycloneDX 1.6 VEX, all statements of one or none.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from packageurl import PackageURL
from sqlalchemy import select
from sqlalchemy.orm import Session

from bulkhead.cra.vex_cyclonedx import CycloneDxVexError, is_cyclonedx, read_cyclonedx_vex, write_cyclonedx_vex
from bulkhead.cra.vex_terms import (
    CYCLONEDX_TO_OPENVEX,
    JUSTIFICATIONS,
    STATUSES,
    VexEntry,
    VexTermError,
    check_decision,
)

from ..errors import Invalid, NotFound
from ..models import Device, Release, Tenant, utcnow
from ..vuln_models import VexStatement, VulnFinding
from .fleet_names import listing
from .vex_apply import reapply
from .vuln_exposure import vex_json
from .vuln_scan import lock_tenant

__all__ = [
    "FORMATS",
    "JUSTIFICATIONS",
    "STATUSES",
    "cyclonedx",
    "delete_statement",
    "detect_format",
    "import_document",
    "import_openvex",
    "openvex",
    "parse_document",
    "set_statement",
]

FORMATS = ("openvex", "cyclonedx")


def _check(status: str, justification: str | None, impact: str | None) -> None:
    try:
        check_decision(status, justification, impact)
    except VexTermError as e:
        raise Invalid(str(e)) from None


def _known_product(s: Session, tid: int, compatible: str) -> None:
    """A statement names a product the tenant has: a release or a device of that compatible."""
    if s.scalar(select(Release.id).where(Release.tenant_id == tid, Release.compatible == compatible).limit(1)):
        return
    if s.scalar(select(Device.id).where(Device.tenant_id == tid, Device.compatible == compatible).limit(1)):
        return
    known = sorted(set(s.scalars(select(Release.compatible).where(Release.tenant_id == tid).distinct())))
    raise NotFound(
        f"no release or device of compatible {compatible!r}; VEX statements are per product: {listing(known)} "
        "(see 'bulkhead release list')"
    )


def _component_of(component: str | None, version: str | None, purl: str | None) -> tuple[str, str, str | None]:
    """The component (name), the version triaged and the purl a statement names; a purl gives name and version."""
    if purl:
        try:
            p = PackageURL.from_string(purl)
        except ValueError as e:
            raise Invalid(f"purl {purl!r} is not a package URL ({e}); e.g. pkg:generic/openssl@3.2.1") from None
        component = component or unquote(p.name)
        version = version or p.version
    if version and not component:
        raise Invalid("component_version needs the component it is a version of")
    return (component or "")[:256], (version or "")[:256], purl


def _triaged_version(s: Session, tid: int, compatible: str, cve: str, component: str) -> str:
    """The version of the component a statement without one is triaged against: that of the product's newest release
    (else device profile) with a finding of the CVE for it; "" (any version) when no scan has seen one."""
    F = VulnFinding
    q = select(F.component_version).where(F.tenant_id == tid, F.compatible == compatible, F.cve == cve, F.component == component)
    found = s.scalar(q.where(F.profile_id.is_(None)).order_by(F.release_id.desc()).limit(1))
    return found if found is not None else s.scalar(q.order_by(F.id.desc()).limit(1)) or ""


def set_statement(
    s: Session,
    tid: int,
    actor: str,
    compatible: str,
    cve: str,
    component: str | None,
    status: str,
    justification: str | None,
    impact: str | None,
    action: str | None,
    component_version: str | None = None,
    purl: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create or replace a person's statement; returns it and whether it is new. A statement for a component records
    the version it was triaged against (given, from its purl, or the version the product's newest scanned release
    has; "*" for every version): it applies while the component has that version. It replaces the SBOM's statement
    for the same key."""
    _check(status, justification, impact)
    name, version, purl = _component_of(component, component_version, purl)
    lock_tenant(s, tid)
    _known_product(s, tid, compatible)
    if name and version == "*":  # asked for: every version of the component
        version = ""
    elif name and not version:
        version = _triaged_version(s, tid, compatible, cve, name)
    v = _statement(s, tid, compatible, cve, name, version)
    created = v is None
    if v is None:
        v = VexStatement(tenant_id=tid, compatible=compatible, cve=cve, component=name, component_version=version)
        s.add(v)
    v.status, v.justification, v.impact_statement, v.action_statement = status, justification, impact, action
    v.purl, v.origin, v.actor, v.at = purl, "user", actor, utcnow()
    s.flush()
    reapply(s, tid, compatible, cve)
    return vex_json(v), created


def _statement(s: Session, tid: int, compatible: str, cve: str, component: str, version: str) -> VexStatement | None:
    return s.scalar(
        select(VexStatement).where(
            VexStatement.tenant_id == tid,
            VexStatement.compatible == compatible,
            VexStatement.cve == cve,
            VexStatement.component == component,
            VexStatement.component_version == version,
        )
    )


def delete_statement(s: Session, tid: int, vex_id: int) -> dict[str, Any]:
    lock_tenant(s, tid)
    v = s.scalar(select(VexStatement).where(VexStatement.tenant_id == tid, VexStatement.id == vex_id))
    if v is None:
        raise NotFound(f"VEX statement {vex_id} does not exist; list them with 'bulkhead vex list'")
    out = vex_json(v)
    s.delete(v)
    s.flush()
    reapply(s, tid, out["compatible"], out["cve"])
    return out


def _purl(name: str, version: str | None = None) -> str:
    return f"pkg:generic/{quote(name, safe='')}" + (f"@{quote(version, safe='')}" if version else "")


def openvex(s: Session, tid: int, compatible: str | None, author: str) -> dict[str, Any]:
    """The tenant's statements (of one product, or all) as one OpenVEX 0.2.0 document."""
    statements = []
    for v in _entries(s, tid, compatible):
        product: dict[str, Any] = {"@id": _purl(v.compatible)}
        if v.component:
            product["subcomponents"] = [{"@id": v.purl or _purl(v.component, v.component_version)}]
        st: dict[str, Any] = {
            "vulnerability": {"name": v.cve},
            "products": [product],
            "status": v.status,
            "timestamp": v.at.isoformat(),
        }
        if v.justification:
            st["justification"] = CYCLONEDX_TO_OPENVEX.get(v.justification, v.justification)
        if v.impact_statement:
            st["impact_statement"] = v.impact_statement
        if v.action_statement:
            st["action_statement"] = v.action_statement
        elif v.status == "affected":
            st["action_statement"] = "No action statement was recorded; see the vendor's advisory."
        statements.append(st)
    tenant = s.get(Tenant, tid)
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": f"urn:uuid:{uuid.uuid4()}",
        "author": f"{tenant.name if tenant else 'bulkhead'} ({author})",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "version": 1,
        "tooling": "bulkhead",
        "statements": statements,
    }


def _purl_name(ref: Any) -> str | None:
    """The name a product or subcomponent `@id` stands for: a purl's name (`pkg:generic/openssl` -> openssl)."""
    return _purl_parts(ref)[0]


def _purl_parts(ref: Any) -> tuple[str | None, str | None, str | None]:
    """Name, version and purl of a product or subcomponent `@id` (a purl, or a plain name)."""
    if not isinstance(ref, str) or not ref:
        return None, None, None
    if ref.startswith("pkg:"):
        try:
            p = PackageURL.from_string(ref)
        except ValueError:
            return None, None, None
        return unquote(p.name), p.version, ref
    return ref, None, None


def _statement_cve(st: Mapping[str, Any]) -> str | None:
    v = st.get("vulnerability")
    if isinstance(v, str):  # OpenVEX 0.0.x wrote the id as a string
        return v
    if isinstance(v, Mapping):
        name = v.get("name") or v.get("@id")
        return name if isinstance(name, str) else None
    return None


def _text(where: str, key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 10_000:
        raise Invalid(f"{where}: {key} must be a string (at most 10,000 characters)")
    return value


def parse_openvex(doc: Any, compatible: str | None) -> list[VexEntry]:
    """An OpenVEX document's statements, every one checked; Invalid naming the first statement that cannot be taken
    (then none is). A subcomponent's purl gives the component's name and the version it was triaged against."""
    if not isinstance(doc, Mapping) or not str(doc.get("@context", "")).startswith("https://openvex.dev/ns"):
        raise Invalid("not an OpenVEX document: @context must be https://openvex.dev/ns/...")
    statements = doc.get("statements")
    if not isinstance(statements, list) or not statements:
        raise Invalid("the OpenVEX document has no statements")
    out = []
    for i, st in enumerate(statements):
        where = f"statements[{i}]"
        if not isinstance(st, Mapping):
            raise Invalid(f"{where} is not an object")
        cve = _statement_cve(st)
        if not cve or len(cve) > 64:
            raise Invalid(f"{where}: vulnerability.name is missing")
        where = f"{where} ({cve})"
        status, justification = st.get("status"), _text(where, "justification", st.get("justification"))
        impact = _text(where, "impact_statement", st.get("impact_statement"))
        action = _text(where, "action_statement", st.get("action_statement"))
        try:
            _check(str(status), justification, impact)
        except Invalid as e:
            raise Invalid(f"{where}: {e.message}") from None
        products = st.get("products") or []
        if not isinstance(products, list) or not products:
            raise Invalid(f"{where}: products is missing")
        for product in products:
            pid = product.get("@id") if isinstance(product, Mapping) else None
            target = compatible or _purl_name(pid)
            if not target:
                raise Invalid(f"{where}: a product without @id; give the product with ?compatible=")
            subs = product.get("subcomponents") if isinstance(product, Mapping) else None
            subs = subs if isinstance(subs, list) else []
            parts = [_purl_parts(c.get("@id")) for c in subs if isinstance(c, Mapping)] or [(None, None, None)]
            for name, version, purl in parts:
                out.append(VexEntry(target, cve.upper(), str(status), name, version, purl, justification, impact, action))
    return out


def detect_format(doc: Any, fmt: str | None) -> str:
    """The format of an uploaded VEX document: the one asked for (checked), else what it looks like."""
    if fmt is not None and fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    found = "cyclonedx" if is_cyclonedx(doc) else "openvex" if isinstance(doc, Mapping) and "@context" in doc else None
    if found is None:
        raise Invalid(
            "neither an OpenVEX document (@context https://openvex.dev/ns/...) nor a CycloneDX one "
            '(bomFormat "CycloneDX" with vulnerabilities[].analysis); send one of them'
        )
    if fmt is not None and fmt != found:
        raise Invalid(f"the document is {found}, not {fmt}: drop format or send a {fmt} document")
    return found


def parse_document(doc: Any, compatible: str | None, fmt: str | None) -> tuple[str, list[VexEntry]]:
    found = detect_format(doc, fmt)
    if found == "openvex":
        return found, parse_openvex(doc, compatible)
    try:
        return found, read_cyclonedx_vex(doc, compatible)
    except CycloneDxVexError as e:
        raise Invalid(str(e)) from None


def import_document(
    s: Session, tid: int, actor: str, doc: Any, compatible: str | None, fmt: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Set every statement of an OpenVEX or CycloneDX VEX document (all or none: the caller's transaction): for
    `compatible`, else for the product the document names (as the exports write it). Returns the format and them."""
    found, entries = parse_document(doc, compatible, fmt)
    out = []
    for e in entries:
        out.append(
            set_statement(s, tid, actor, e.product, e.cve, e.component, e.status, e.justification, e.impact, e.action,
                          e.component_version, e.purl)[0]
        )  # fmt: skip
    return found, out


def import_openvex(s: Session, tid: int, actor: str, doc: Any, compatible: str | None) -> list[dict[str, Any]]:
    """Set every statement of an OpenVEX document (all or none)."""
    return import_document(s, tid, actor, doc, compatible, "openvex")[1]


def _entries(s: Session, tid: int, compatible: str | None) -> list[VexStatement]:
    q = select(VexStatement).where(VexStatement.tenant_id == tid)
    if compatible:
        q = q.where(VexStatement.compatible == compatible)
    order = (VexStatement.compatible, VexStatement.cve, VexStatement.component, VexStatement.component_version)
    return list(s.scalars(q.order_by(*order)))


def cyclonedx(s: Session, tid: int, compatible: str | None, author: str) -> dict[str, Any]:
    """The tenant's statements (of one product, or all) as one CycloneDX 1.6 VEX document."""
    entries = [
        VexEntry(v.compatible, v.cve, v.status, v.component or None, v.component_version or None, v.purl,
                 v.justification, v.impact_statement, v.action_statement, v.at)
        for v in _entries(s, tid, compatible)
    ]  # fmt: skip
    tenant = s.get(Tenant, tid)
    return write_cyclonedx_vex(entries, f"{tenant.name if tenant else 'bulkhead'} ({author})")
