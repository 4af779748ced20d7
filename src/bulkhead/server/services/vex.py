"""VEX statements: a triage decision per product (compatible) and CVE, optionally for one component.

A statement applies at once to every finding of the product's releases and devices (and to later scans): the
finding keeps what the matcher said (`matcher_status`) and shows the statement's status, so "not_affected" or
"fixed" takes the CVE out of the exposure while the record stays. A statement for a component wins over the
product-wide one. Justifications use the CycloneDX (`code_not_reachable`, …) or the OpenVEX vocabulary
(`vulnerable_code_not_in_execute_path`, …); the OpenVEX export maps CycloneDX terms onto OpenVEX's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from packageurl import PackageURL
from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from ..errors import Invalid, NotFound
from ..models import Device, Release, Tenant, utcnow
from ..vuln_models import VexStatement, VulnFinding
from .fleet_names import listing
from .vuln_exposure import vex_json
from .vuln_scan import lock_tenant

__all__ = ["JUSTIFICATIONS", "STATUSES", "delete_statement", "import_openvex", "openvex", "set_statement"]

STATUSES = ("not_affected", "affected", "fixed", "under_investigation")
OPENVEX_JUSTIFICATIONS = (
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
)
# CycloneDX analysis.justification -> the OpenVEX justification that says the same
CYCLONEDX_TO_OPENVEX = {
    "code_not_present": "vulnerable_code_not_present",
    "code_not_reachable": "vulnerable_code_not_in_execute_path",
    "requires_configuration": "vulnerable_code_cannot_be_controlled_by_adversary",
    "requires_dependency": "component_not_present",
    "requires_environment": "vulnerable_code_cannot_be_controlled_by_adversary",
    "protected_by_compiler": "inline_mitigations_already_exist",
    "protected_at_runtime": "inline_mitigations_already_exist",
    "protected_at_perimeter": "inline_mitigations_already_exist",
    "protected_by_mitigating_control": "inline_mitigations_already_exist",
}
JUSTIFICATIONS = OPENVEX_JUSTIFICATIONS + tuple(CYCLONEDX_TO_OPENVEX)


def _check(status: str, justification: str | None, impact: str | None) -> None:
    if status not in STATUSES:
        raise Invalid(f"VEX status must be one of {', '.join(STATUSES)}, not {status!r}")
    if justification is not None and justification not in JUSTIFICATIONS:
        raise Invalid(
            f"unknown justification {justification!r}: use an OpenVEX ({', '.join(OPENVEX_JUSTIFICATIONS)}) "
            f"or CycloneDX ({', '.join(CYCLONEDX_TO_OPENVEX)}) justification"
        )
    if justification is not None and status != "not_affected":
        raise Invalid("a justification only goes with status not_affected")
    if status == "not_affected" and not justification and not impact:
        raise Invalid("status not_affected needs a justification or an impact statement (OpenVEX requires one)")


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


def _reapply(s: Session, tid: int, compatible: str, cve: str) -> None:
    """Findings of the product and CVE back to the matcher's status, then the statements laid over them again."""
    F = VulnFinding
    scope = and_(F.tenant_id == tid, F.compatible == compatible, F.cve == cve)
    s.execute(update(F).where(scope).values(status=F.matcher_status, vex_id=None))
    statements = list(
        s.scalars(
            select(VexStatement).where(
                VexStatement.tenant_id == tid, VexStatement.compatible == compatible, VexStatement.cve == cve
            )
        )
    )
    for v in sorted(statements, key=lambda v: v.component != ""):  # product-wide first, components over it
        where = [F.component == v.component] if v.component else []
        s.execute(update(F).where(scope, *where).values(status=v.status, vex_id=v.id))


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
) -> tuple[dict[str, Any], bool]:
    """Create or replace the statement; returns it and whether it is new."""
    _check(status, justification, impact)
    lock_tenant(s, tid)
    _known_product(s, tid, compatible)
    v = s.scalar(
        select(VexStatement).where(
            VexStatement.tenant_id == tid,
            VexStatement.compatible == compatible,
            VexStatement.cve == cve,
            VexStatement.component == (component or ""),
        )
    )
    created = v is None
    if v is None:
        v = VexStatement(tenant_id=tid, compatible=compatible, cve=cve, component=component or "")
        s.add(v)
    v.status, v.justification, v.impact_statement, v.action_statement = status, justification, impact, action
    v.actor, v.at = actor, utcnow()
    s.flush()
    _reapply(s, tid, compatible, cve)
    return vex_json(v), created


def delete_statement(s: Session, tid: int, vex_id: int) -> dict[str, Any]:
    lock_tenant(s, tid)
    v = s.scalar(select(VexStatement).where(VexStatement.tenant_id == tid, VexStatement.id == vex_id))
    if v is None:
        raise NotFound(f"VEX statement {vex_id} does not exist; list them with 'bulkhead vex list'")
    out = vex_json(v)
    s.delete(v)
    s.flush()
    _reapply(s, tid, out["compatible"], out["cve"])
    return out


def _purl(name: str) -> str:
    return f"pkg:generic/{quote(name, safe='')}"


def openvex(s: Session, tid: int, compatible: str | None, author: str) -> dict[str, Any]:
    """The tenant's statements (of one product, or all) as one OpenVEX 0.2.0 document."""
    q = select(VexStatement).where(VexStatement.tenant_id == tid)
    if compatible:
        q = q.where(VexStatement.compatible == compatible)
    statements = []
    for v in s.scalars(q.order_by(VexStatement.compatible, VexStatement.cve, VexStatement.component)):
        product: dict[str, Any] = {"@id": _purl(v.compatible)}
        if v.component:
            product["subcomponents"] = [{"@id": _purl(v.component)}]
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
    if not isinstance(ref, str) or not ref:
        return None
    if ref.startswith("pkg:"):
        try:
            return unquote(PackageURL.from_string(ref).name)
        except ValueError:
            return None
    return ref


def _statement_cve(st: Mapping[str, Any]) -> str | None:
    v = st.get("vulnerability")
    if isinstance(v, str):  # OpenVEX 0.0.x wrote the id as a string
        return v
    if isinstance(v, Mapping):
        name = v.get("name") or v.get("@id")
        return name if isinstance(name, str) else None
    return None


def parse_openvex(doc: Any, compatible: str | None) -> list[tuple[str, str, str | None, str, str | None, str | None, str | None]]:
    """An OpenVEX document's statements as (compatible, cve, component, status, justification, impact, action), every
    one checked; Invalid naming the first statement that cannot be taken (then none is)."""
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
        status, justification = st.get("status"), st.get("justification")
        impact, action = st.get("impact_statement"), st.get("action_statement")
        try:
            _check(str(status), justification, impact)
        except Invalid as e:
            raise Invalid(f"{where} ({cve}): {e.message}") from None
        products = st.get("products") or []
        if not isinstance(products, list) or not products:
            raise Invalid(f"{where} ({cve}): products is missing")
        for product in products:
            pid = product.get("@id") if isinstance(product, Mapping) else None
            target = compatible or _purl_name(pid)
            if not target:
                raise Invalid(f"{where} ({cve}): a product without @id; give the product with ?compatible=")
            subs = product.get("subcomponents") or [] if isinstance(product, Mapping) else []
            components = [_purl_name(c.get("@id")) for c in subs if isinstance(c, Mapping)] or [None]
            for component in components:
                out.append((target, cve.upper(), component, str(status), justification, impact, action))
    return out


def import_openvex(s: Session, tid: int, actor: str, doc: Any, compatible: str | None) -> list[dict[str, Any]]:
    """Set every statement of an OpenVEX document (all or none): for `compatible`, else for the product its purl
    names (`pkg:generic/<compatible>`, as the export writes it)."""
    parsed = parse_openvex(doc, compatible)
    return [set_statement(s, tid, actor, *st)[0] for st in parsed]
