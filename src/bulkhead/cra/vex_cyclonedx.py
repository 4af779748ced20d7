"""CycloneDX VEX (1.6 JSON): VEX decisions written as, and read from, a BOM's `vulnerabilities[].analysis`.

Written with cyclonedx-python-lib: one top-level component per product (type firmware, bom-ref
`pkg:generic/<compatible>`), a component statement's component nested in it (name, version, purl), and one
vulnerability per decision whose `affects` names the product or the component. Read back: a ref names the product
when it is a top-level component (or `metadata.component`), a component when it is nested in one; with an explicit
product every ref other than the product's own is a component of it. States map onto the VEX statuses
(resolved/resolved_with_pedigree -> fixed, exploitable -> affected, in_triage -> under_investigation,
false_positive/not_affected -> not_affected); `detail` is the impact statement, `recommendation` the action.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component as CdxComponent
from cyclonedx.model.component import ComponentType
from cyclonedx.model.impact_analysis import ImpactAnalysisJustification, ImpactAnalysisState
from cyclonedx.model.vulnerability import BomTarget, Vulnerability, VulnerabilityAnalysis
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from .vex_terms import CYCLONEDX_JUSTIFICATIONS, OPENVEX_TO_CYCLONEDX, VexEntry, VexTermError, check_decision

__all__ = ["STATE_OF_STATUS", "STATUS_OF_STATE", "CycloneDxVexError", "is_cyclonedx", "read_cyclonedx_vex", "write_cyclonedx_vex"]

STATUS_OF_STATE = {
    ImpactAnalysisState.RESOLVED: "fixed",
    ImpactAnalysisState.RESOLVED_WITH_PEDIGREE: "fixed",
    ImpactAnalysisState.EXPLOITABLE: "affected",
    ImpactAnalysisState.IN_TRIAGE: "under_investigation",
    ImpactAnalysisState.FALSE_POSITIVE: "not_affected",
    ImpactAnalysisState.NOT_AFFECTED: "not_affected",
}
STATE_OF_STATUS = {
    "fixed": ImpactAnalysisState.RESOLVED,
    "affected": ImpactAnalysisState.EXPLOITABLE,
    "under_investigation": ImpactAnalysisState.IN_TRIAGE,
    "not_affected": ImpactAnalysisState.NOT_AFFECTED,
}


class CycloneDxVexError(ValueError):
    """A CycloneDX document that cannot be taken as VEX (the message names the vulnerability and what to fix)."""


def is_cyclonedx(doc: Any) -> bool:
    return isinstance(doc, Mapping) and doc.get("bomFormat") == "CycloneDX"


def product_ref(product: str) -> str:
    return f"pkg:generic/{quote(product, safe='')}"


def _component_ref(product: str, name: str, version: str | None) -> str:
    return f"{product_ref(product)}#{quote(name, safe='')}" + (f"@{quote(version, safe='')}" if version else "")


def write_cyclonedx_vex(entries: Iterable[VexEntry], author: str) -> dict[str, Any]:
    """The decisions as one CycloneDX 1.6 JSON VEX document."""
    products: dict[str, CdxComponent] = {}
    parts: dict[str, CdxComponent] = {}
    vulns: list[Vulnerability] = []
    for e in entries:
        prod = products.get(e.product)
        if prod is None:
            prod = products[e.product] = CdxComponent(name=e.product, type=ComponentType.FIRMWARE, bom_ref=product_ref(e.product))
        ref = product_ref(e.product)
        if e.component:
            ref = _component_ref(e.product, e.component, e.component_version)
            if ref not in parts:
                purl = None
                if e.purl:
                    try:
                        purl = PackageURL.from_string(e.purl)
                    except ValueError:
                        purl = None
                parts[ref] = CdxComponent(
                    name=e.component, version=e.component_version or None, purl=purl, bom_ref=ref,
                    type=ComponentType.LIBRARY,
                )  # fmt: skip
                prod.components.add(parts[ref])
        justification = None
        if e.justification:
            cdx = e.justification if e.justification in CYCLONEDX_JUSTIFICATIONS else OPENVEX_TO_CYCLONEDX[e.justification]
            justification = ImpactAnalysisJustification(cdx)
        analysis = VulnerabilityAnalysis(
            state=STATE_OF_STATUS[e.status],
            justification=justification,
            detail=e.impact,
            first_issued=e.at,
            last_updated=e.at,
        )
        vulns.append(
            Vulnerability(
                bom_ref=f"vex-{len(vulns) + 1}", id=e.cve, analysis=analysis, recommendation=e.action,
                affects=[BomTarget(ref=ref)],
            )
        )  # fmt: skip
    bom = Bom(components=products.values(), vulnerabilities=vulns)
    bom.metadata.component = None
    bom.serial_number = uuid.uuid4()
    with warnings.catch_warnings():  # "no dependencies defined": a VEX document states none
        warnings.simplefilter("ignore")
        doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    doc.setdefault("metadata", {})["authors"] = [{"name": author}]
    return doc


@dataclass(frozen=True)
class _Target:
    name: str
    version: str | None
    purl: str | None
    parent: str | None  # the enclosing top-level component's name (None: a top-level one or the metadata component)
    is_metadata: bool = False


def _targets(bom: Bom) -> dict[str, _Target]:
    out: dict[str, _Target] = {}

    def walk(cs: Iterable[CdxComponent], parent: str | None) -> None:
        for c in cs:
            ref = str(c.bom_ref.value) if c.bom_ref and c.bom_ref.value else None
            if ref:
                out[ref] = _Target(c.name, c.version, str(c.purl) if c.purl else None, parent)
            walk(c.components, parent if parent is not None else c.name)

    meta = bom.metadata.component
    if meta is not None:
        if meta.bom_ref and meta.bom_ref.value:
            out[str(meta.bom_ref.value)] = _Target(meta.name, meta.version, None, None, True)
        walk(meta.components, meta.name)
    walk(bom.components, meta.name if meta is not None else None)
    return out


def _from_ref(ref: str, product: str | None) -> _Target | None:
    """A ref that names no component of the document: a purl stands for its name (and version), a component of the
    document's product (`metadata.component`) when it has one, else a product itself."""
    if ref.startswith("urn:cdx:") and "#" in ref:  # a BOM-Link into another document: its fragment
        ref = unquote(ref.split("#", 1)[1])
    if ref.startswith("pkg:"):
        try:
            p = PackageURL.from_string(ref)
        except ValueError:
            return None
        return _Target(unquote(p.name), p.version, ref, product)
    return None


def read_cyclonedx_vex(doc: Any, product: str | None) -> list[VexEntry]:
    """Every decision of a CycloneDX VEX document, each checked; CycloneDxVexError names the first that cannot be
    taken (then the caller takes none). `product` is the product every decision is for (default: as the refs say)."""
    if not is_cyclonedx(doc):
        raise CycloneDxVexError('not a CycloneDX document: bomFormat must be "CycloneDX"')
    try:
        bom = Bom.from_json(dict(doc))  # type: ignore[attr-defined]
    except Exception as e:  # the library raises many types on malformed input
        raise CycloneDxVexError(f"the CycloneDX document cannot be read: {e}; check it against the CycloneDX 1.6 schema") from e
    if not bom.vulnerabilities:
        raise CycloneDxVexError("the CycloneDX document has no vulnerabilities: a VEX document states at least one")
    targets = _targets(bom)
    meta = bom.metadata.component
    out = []
    for v in bom.vulnerabilities:
        cve = (v.id or "").strip()
        where = f"vulnerability {cve or '(no id)'}" + (f" (bom-ref {v.bom_ref.value})" if v.bom_ref and v.bom_ref.value else "")
        if not cve or len(cve) > 64:
            raise CycloneDxVexError(f"{where}: id is missing (e.g. CVE-2024-3094)")
        if v.analysis is None or v.analysis.state is None:
            raise CycloneDxVexError(f"{where}: analysis.state is missing; a VEX decision needs one")
        status = STATUS_OF_STATE[v.analysis.state]
        justification = v.analysis.justification.value if v.analysis.justification else None
        impact = v.analysis.detail or None
        if v.analysis.state is ImpactAnalysisState.FALSE_POSITIVE and not justification and not impact:
            impact = "false positive (CycloneDX analysis.state)"
        action = v.recommendation or None
        if not action and v.analysis.responses:
            action = "CycloneDX responses: " + ", ".join(sorted(r.value for r in v.analysis.responses))
        try:
            check_decision(status, justification, impact)
        except VexTermError as e:
            raise CycloneDxVexError(f"{where}: {e}") from None
        if not v.affects:
            raise CycloneDxVexError(f"{where}: affects is missing; name the product or component it is about")
        for target in v.affects:
            ref = str(target.ref)
            t = targets.get(ref) or _from_ref(ref, meta.name if meta is not None else None)
            if t is None:
                raise CycloneDxVexError(f"{where}: affects ref {ref!r} names no component of the document")
            if product is not None:
                own = t.is_metadata or (t.parent is None and t.name == product)
                entry_product, component = product, None if own else t
            elif t.is_metadata or (t.parent is None and meta is None):
                entry_product, component = t.name, None
            elif t.parent is not None:
                entry_product, component = t.parent, t
            else:
                raise CycloneDxVexError(
                    f"{where}: affects ref {ref!r} names a component but no product; give the product with ?compatible="
                )
            out.append(
                VexEntry(
                    product=entry_product,
                    cve=cve.upper(),
                    status=status,
                    component=component.name if component else None,
                    component_version=component.version if component else None,
                    purl=component.purl if component else None,
                    justification=justification,
                    impact=impact,
                    action=action,
                )
            )
    return out
