"""What a release or a device profile contains, matched against the feeds: component lists in, finding rows out.

No database here. A release's components come from its stored SBOMs; a profile's are its release's with the
device's reported packages laid over them (a reported package replaces the release's component of that name and
keeps its CPEs, recipe and Debian source; a package the release does not list is added; a release component the
device does not report stays, since the image has it). Debian packages go to the Debian tracker matcher when the
tracker feed is held, everything else (and Debian packages without a tracker) to the generic CVE 5 / NVD matcher.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from packageurl import PackageURL

from bulkhead.cra.components import read_inventory, read_sbom
from bulkhead.cra.cpe import parse_cpe
from bulkhead.cra.cve_digest import tracker_subset
from bulkhead.cra.match_debian import debian_codename, is_debian, match_debian
from bulkhead.cra.match_generic import match_generic
from bulkhead.cra.model import Component, ComponentOrigin, Finding, Severity
from bulkhead.cra.products import PRODUCT_SYNONYMS, component_keys, entry_keys
from bulkhead.cra.versions import component_version
from bulkhead.cra.vulnrecord import VulnRecord

from ..vuln_feeds import Knowledge

__all__ = [
    "SEVERITY_RANK",
    "STATUS_RANK",
    "debian_releases",
    "finding_rows",
    "inventory_key",
    "match",
    "product_index",
    "profile_components",
    "release_components",
    "reported_apps",
    "restricted",
]

SEVERITY_RANK = {"unknown": 0, "none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
# Which status of a CVE to show when several components disagree: affected first.
STATUS_RANK = {"affected": 3, "under_investigation": 2, "fixed": 1, "not_affected": 0}


def release_components(documents: Sequence[Any]) -> list[Component]:
    """The components of a release's SBOM documents (SPDX and CycloneDX of the same image are read once each and
    merged: the same name, version and purl is one component)."""
    seen: dict[tuple[str, str, str | None], Component] = {}
    for doc in documents:
        for c in read_sbom([doc]):
            seen.setdefault((c.name, c.version, c.purl), c)
    return list(seen.values())


def inventory_key(reported: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The part of a device's inventory that matching reads (packages, os-release, the app versions it runs) and its
    canonical JSON text."""
    packages = reported.get("packages")
    os_release = reported.get("os_release")
    part: dict[str, Any] = {}
    if isinstance(packages, Mapping) and packages.get("packages"):
        part["packages"] = {"format": packages.get("format"), "packages": packages.get("packages")}
        if isinstance(os_release, Mapping):
            part["os_release"] = {k: v for k, v in os_release.items() if k in ("ID", "VERSION_ID", "VERSION_CODENAME")}
    apps = reported_apps(reported)
    if apps:
        part["apps"] = apps
    return (json.dumps(part, sort_keys=True, separators=(",", ":")) if part else ""), part


def reported_apps(reported: Mapping[str, Any]) -> dict[str, str]:
    """{app name: version} of the containers a device reports (the apps it runs; each container names its app)."""
    apps: dict[str, str] = {}
    containers = reported.get("containers")
    for c in containers if isinstance(containers, list) else []:
        if isinstance(c, Mapping) and isinstance(c.get("app"), str) and isinstance(c.get("version"), str):
            apps[c["app"][:128]] = c["version"][:128]
    return dict(sorted(apps.items()))


def _with_version(c: Component, version: str) -> Component:
    """A release component at the version a device reports: its identity (CPE product, recipe, source) is kept."""
    upstream = component_version(dataclasses.replace(c, version=version, cpes=()))
    cpes = []
    for text in c.cpes:
        parts = text.split(":")
        if text.startswith("cpe:2.3:") and len(parts) > 5 and parse_cpe(text):
            parts[5] = upstream
            cpes.append(":".join(parts))
    purl = c.purl
    if purl:
        try:
            p = PackageURL.from_string(purl)
            purl = PackageURL(p.type, p.namespace, p.name, version, p.qualifiers, p.subpath).to_string()
        except ValueError:
            purl = None
    same_source = c.source_version is not None and c.source_version == c.version
    return dataclasses.replace(
        c,
        version=version,
        cpes=tuple(cpes),
        purl=purl,
        source_version=version if same_source else None,
        statements=(),  # what the SBOM said was about the version it describes
        origin=ComponentOrigin.INVENTORY,
    )


def profile_components(base: Sequence[Component], inventory: Mapping[str, Any]) -> list[Component]:
    """The release's components with the device's reported packages laid over them."""
    if not inventory.get("packages"):
        return list(base)
    reported = read_inventory(inventory["packages"], inventory.get("os_release"))
    by_name: dict[str, list[Component]] = {}
    for c in base:
        by_name.setdefault(c.name, []).append(c)
    replaced: set[str] = set()
    added: list[Component] = []
    for r in reported:
        known = by_name.get(r.name)
        if not known:
            added.append(r)
        elif all(k.version != r.version for k in known):
            replaced.add(r.name)
            added.append(_with_version(known[0], r.version))
    return [c for c in base if c.name not in replaced] + added


def debian_releases(components: Iterable[Component]) -> set[str]:
    """The Debian codenames the components name (the tracker is read for those only)."""
    out = set()
    for c in components:
        if is_debian(c):
            name = debian_codename(c.distro_release)
            if name:
                out.add(name)
    return out


def _products(record: VulnRecord) -> set[str]:
    """The product names a record can concern (as the generic matcher indexes them)."""
    products = {product for a in record.affected for _, product in entry_keys(a)}
    products |= {cpe.product for m in record.cpe_matches if (cpe := parse_cpe(m.criteria))}
    return {PRODUCT_SYNONYMS.get(p, p) for p in products}


def product_index(k: Knowledge) -> dict[str, list[VulnRecord]]:
    """Product name -> the records naming it, in feed order."""
    index: dict[str, list[VulnRecord]] = {}
    for r in k.all_records():
        for product in _products(r):
            index.setdefault(product, []).append(r)
    return index


def candidate_records(components: Sequence[Component], k: Knowledge) -> list[VulnRecord]:
    """The records that can concern the components: those naming one of their products, and those their SBOM states
    something about. The product index is built once per Knowledge, so each release or profile reads only the few
    records it may match instead of the whole feed."""
    if k.by_product is None:
        k.by_product = product_index(k)
    picked: dict[int, VulnRecord] = {}
    for c in components:
        for _, product in component_keys(c):
            for r in k.by_product.get(product, ()):
                picked[id(r)] = r
        for st in c.statements:
            for r in k.records.get(st.cve, ()):
                picked[id(r)] = r
    return list(picked.values())


def restricted(k: Knowledge, cves: set[str]) -> Knowledge:
    """What the feeds say about these vulnerabilities only (records and tracker issues in their feed order, KEV and
    EPSS as they are): matching against it gives, for these ids, exactly the findings matching against `k` gives,
    since a finding depends only on what the feeds say about its own id."""
    return Knowledge(
        records={cve: rs for cve, rs in k.records.items() if cve in cves},
        tracker=tracker_subset(k.tracker, cves) if k.tracker is not None else None,
        kev=k.kev,
        epss=k.epss,
        versions=k.versions,
        osv=k.osv,  # app findings of other ids are left out by the caller
    )


def _found(components: Sequence[Component], k: Knowledge) -> list[Finding]:
    debian = [c for c in components if is_debian(c)] if k.tracker is not None else []
    ids = {id(c) for c in debian}
    others = [c for c in components if id(c) not in ids]
    found = match_generic(others, candidate_records(others, k)) if k.records and others else []
    if k.tracker is not None and debian:
        found += match_debian(debian, k.tracker)
    return found


def match(components: Sequence[Component], k: Knowledge, memo: dict[Component, list[Finding]] | None = None) -> list[Finding]:
    """Every finding, at most one per component and CVE (the most severe status when two records disagree).

    With `memo` (one per Knowledge), each distinct component is matched once: a component's findings depend only on
    it and the feeds, and a product's releases share most of their components."""
    if memo is None:
        return _best(_found(components, k))
    todo = list({c: None for c in components if c not in memo})
    if todo:
        per: dict[Component, list[Finding]] = {c: [] for c in todo}
        for f in _found(todo, k):
            per[f.component].append(f)
        memo.update(per)
    return _best([f for c in components for f in memo[c]])


def _best(found: Iterable[Finding]) -> list[Finding]:
    best: dict[tuple[str, str, str], Finding] = {}
    for f in found:
        key = (f.component.name, f.component.version, f.cve)
        old = best.get(key)
        if old is None or STATUS_RANK[f.status.value] > STATUS_RANK[old.status.value]:
            best[key] = f
    return sorted(best.values(), key=lambda f: (f.cve, f.component.name, f.component.version))


def _severity(f: Finding, k: Knowledge) -> tuple[str, float | None]:
    metrics = [m for r in k.records.get(f.cve, ()) if (m := r.best_metric()) is not None]
    if metrics:
        best = max(metrics, key=lambda m: (float(m.version), m.base_score))
        return best.base_severity.value, best.base_score
    sev = f.severity or Severity.UNKNOWN
    return sev.value, f.cvss


def finding_rows(findings: Iterable[Finding], k: Knowledge) -> list[dict[str, Any]]:
    """The database values of each finding (without tenant, scope, VEX and run)."""
    rows = []
    for f in findings:
        severity, cvss = _severity(f, k)
        kev = k.kev.get(f.cve) if k.kev is not None else None
        epss = k.epss.get(f.cve) if k.epss is not None else None
        rows.append(
            {
                "component": f.component.name[:256],
                "component_version": f.component.version[:256],
                "purl": f.component.purl,
                "cve": f.cve[:64],
                "matcher_status": f.status.value,
                "status": f.status.value,
                "severity": severity,
                "severity_rank": SEVERITY_RANK.get(severity, 0),
                "cvss": cvss,
                "epss": epss.epss if epss is not None else None,
                "kev": kev is not None,
                "kev_date": kev.date_added if kev is not None else None,
                "fixed_version": f.fixed_version[:256] if f.fixed_version else None,
                "source": f.source[:32],
                "reason": f.reason,
                "kernel": f.kernel,
            }
        )
    return rows
