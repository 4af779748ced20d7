"""The generic (upstream/Yocto) matcher: components x CVE 5 / NVD records → findings, a pure function.

For each record and component:
1. What the SBOM says wins: a statement for the CVE (Yocto "CVEs fixed", SPDX 3 / CycloneDX VEX) is the finding,
   with the SBOM's justification as the reason — even when the record's product data does not name the component
   (several CNAs write product "n/a").
2. Else the record's affected entries whose product matches the component (products.py) are evaluated at the
   component's upstream version (versions.py). CNA data decides when it can; ADP data (CISA vulnrichment) when
   the CNA's cannot. In one container: a version inside an "unaffected" item → not affected (fixed when the item
   starts past a default-affected history); inside an "affected" item → affected; otherwise the defaultStatus.
   A version past the end of an affected range is fixed, with that end as the fixed version; one before any
   range is not affected.
3. Else the record's CPE configurations (NVD, CVE 5 cpeApplicability) in the same way.
No product match, or only unevaluable data (git commit ranges, "n/a"), gives no finding — except a product match
with nothing evaluable, which is under investigation. Kernel components get `kernel=True`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cmp_to_key

from .cpe import parse_cpe
from .model import Component, Finding, FindingStatus, SbomVulnStatement
from .products import PRODUCT_SYNONYMS, component_keys, entry_keys, keys_match
from .versions import compare, component_version, entry_contains, in_cpe_range
from .vulnrecord import AffectedProduct, CpeMatch, VersionEntry, VulnRecord

__all__ = ["match_component", "match_generic"]

_Verdict = tuple[FindingStatus, str, str | None]  # status, reason, fixed version
_RANK = {FindingStatus.AFFECTED: 3, FindingStatus.UNDER_INVESTIGATION: 0, FindingStatus.FIXED: 2, FindingStatus.NOT_AFFECTED: 1}


def _describe(e: VersionEntry) -> str:
    if e.less_than:
        return f"[{e.version}, {e.less_than})"
    if e.less_than_or_equal:
        return f"[{e.version}, {e.less_than_or_equal}]"
    return e.version


def _end(e: VersionEntry) -> str:
    return e.less_than or e.less_than_or_equal or e.version


def _by_end(x: VersionEntry, y: VersionEntry) -> int:
    return compare(_end(x), _end(y), x.version_type) or 0


def _past_end(v: str, e: VersionEntry) -> bool:
    """Is v at or after the end of an affected range that starts at or before v (the range's fix is in v)?"""
    end = e.less_than or e.less_than_or_equal
    if end is None or end == "*" or end.endswith(".*"):
        return False
    c_end = compare(v, end, e.version_type)
    if c_end is None or c_end < 0 or (c_end == 0 and e.less_than_or_equal):
        return False
    c_start = 0 if e.version in ("0", "0.0", "0.0.0") else compare(v, e.version, e.version_type)
    return c_start is not None and c_start >= 0


def _evaluate(v: str, a: AffectedProduct) -> _Verdict | None:
    where = f"{a.container} {a.vendor or ''} {a.product or a.package_name or ''}".replace("  ", " ").strip()
    hits = [(e, entry_contains(v, e)) for e in a.versions]
    evaluable = [(e, r) for e, r in hits if r is not None]
    for e, r in evaluable:
        if r and e.status == "unaffected":
            fixed = a.default_status == "affected" and e.version not in ("0", "0.0", "0.0.0")
            status = FindingStatus.FIXED if fixed else FindingStatus.NOT_AFFECTED
            return status, f"version {v} in unaffected {_describe(e)} ({where})", e.version if fixed else None
    for e, r in evaluable:
        if r and e.status == "affected":
            return FindingStatus.AFFECTED, f"version {v} in affected {_describe(e)} ({where})", None
    affected_ranges = [e for e, _ in evaluable if e.status == "affected"]
    if a.default_status == "affected":
        return FindingStatus.AFFECTED, f"version {v} matches no listed version; default status affected ({where})", None
    fixes = [e for e in affected_ranges if _past_end(v, e)]
    if fixes:  # the latest fix below v is the one v carries
        e = max(fixes, key=cmp_to_key(_by_end))
        return FindingStatus.FIXED, f"version {v} is past affected {_describe(e)} ({where})", e.less_than
    if affected_ranges or a.default_status == "unaffected":
        return FindingStatus.NOT_AFFECTED, f"version {v} outside the affected versions ({where})", None
    return None


def _by_containers(v: str, matched: Sequence[AffectedProduct]) -> _Verdict | None:
    for container_kind in ("cna", "adp"):
        verdicts = [r for a in matched if a.container.startswith(container_kind) and (r := _evaluate(v, a)) is not None]
        if verdicts:
            return max(verdicts, key=lambda r: _RANK[r[0]])
    return None


def _by_cpes(v: str, keys: set[tuple[str, str]], matches: Iterable[CpeMatch]) -> _Verdict | None:
    verdicts: list[_Verdict] = []
    for m in matches:
        cpe = parse_cpe(m.criteria)
        if not m.vulnerable or cpe is None:
            continue
        if not keys_match(keys, {(cpe.vendor, PRODUCT_SYNONYMS.get(cpe.product, cpe.product))}):
            continue
        inside = in_cpe_range(v, m)
        if inside is None:
            continue
        if inside:
            verdicts.append((FindingStatus.AFFECTED, f"version {v} matches {m.criteria} {_cpe_range(m)}".strip(), None))
        elif m.version_end_excluding and (c := compare(v, m.version_end_excluding)) is not None and c >= 0:
            verdicts.append((FindingStatus.FIXED, f"version {v} is past {m.criteria} {_cpe_range(m)}", m.version_end_excluding))
        else:
            verdicts.append((FindingStatus.NOT_AFFECTED, f"version {v} outside {m.criteria} {_cpe_range(m)}".strip(), None))
    return max(verdicts, key=lambda r: _RANK[r[0]]) if verdicts else None


def _cpe_range(m: CpeMatch) -> str:
    parts = [
        f">= {m.version_start_including}" if m.version_start_including else "",
        f"> {m.version_start_excluding}" if m.version_start_excluding else "",
        f"<= {m.version_end_including}" if m.version_end_including else "",
        f"< {m.version_end_excluding}" if m.version_end_excluding else "",
    ]
    return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class _Prepared:
    """A component with what matching needs computed once: its product keys, upstream version, statements by CVE."""

    component: Component
    keys: frozenset[tuple[str, str]]
    version: str
    statements: dict[str, SbomVulnStatement]

    @classmethod
    def of(cls, c: Component) -> _Prepared:
        return cls(c, frozenset(component_keys(c)), component_version(c), {s.cve: s for s in c.statements})


def _match(p: _Prepared, record: VulnRecord) -> Finding | None:
    c = p.component
    s = p.statements.get(record.id)
    if s is not None:
        said = ", ".join(x for x in (s.justification, s.detail) if x)
        return Finding(record.id, c, s.status, f"the SBOM says {s.status.value}: {said}", None, "sbom", c.is_kernel)
    keys, v = set(p.keys), p.version
    matched = [a for a in record.affected if keys_match(keys, entry_keys(a))]
    verdict = _by_containers(v, matched) if matched else None
    if verdict is None:
        verdict = _by_cpes(v, keys, record.cpe_matches)
    if verdict is None and matched:
        verdict = (FindingStatus.UNDER_INVESTIGATION, f"the record names this product but no version data applies to {v}", None)
    if verdict is None:
        return None
    status, reason, fixed = verdict
    if c.is_kernel and status == FindingStatus.AFFECTED and c.compiled_sources is not None:
        status, reason = _by_compiled_sources(c.compiled_sources, matched, status, reason)
    if c.is_kernel:
        reason = f"Linux kernel: {reason}"
    return Finding(record.id, c, status, reason, fixed, record.source, c.is_kernel)


@functools.lru_cache(maxsize=16)
def _suffixes(sources: frozenset[str]) -> frozenset[str]:
    """Every path suffix at a "/" of the compiled sources, so that a record's path matches a source listed with a
    prefix ("/usr/src/debug/linux-yocto/6.6/net/ipv4/route.c" holds "net/ipv4/route.c")."""
    out: set[str] = set()
    for src in sources:
        parts = src.strip("/").split("/")
        out.update("/".join(parts[i:]) for i in range(len(parts)))
    return frozenset(out)


def _compiled(path: str, sources: frozenset[str]) -> bool:
    """Whether a record's program file (a path in the kernel tree, "net/ipv4/route.c") is among the compiled sources."""
    return path.strip().removeprefix("./").strip("/") in _suffixes(sources)


def _by_compiled_sources(
    sources: frozenset[str], matched: list[AffectedProduct], status: FindingStatus, reason: str
) -> tuple[FindingStatus, str]:
    """A kernel CVE whose record names the files the flaw is in (CVE 5 `programFiles`), none of them compiled into
    this kernel, does not concern it: what sbom-cve-check and the kernel CNA's own guidance do."""
    files = sorted({f for a in matched for f in a.program_files if f.strip()})
    if not files or any(_compiled(f, sources) for f in files):
        return status, reason
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    return FindingStatus.NOT_AFFECTED, (
        f"none of the files the record names ({shown}) is among the {len(sources)} sources the SBOM lists as "
        f"compiled into this kernel (the version alone: {reason})"
    )


def match_component(c: Component, record: VulnRecord) -> Finding | None:
    """The finding of one record for one component, or None when the record does not concern it."""
    return None if record.state == "REJECTED" else _match(_Prepared.of(c), record)


def _record_products(record: VulnRecord) -> set[str]:
    products = {product for a in record.affected for _, product in entry_keys(a)}
    products |= {cpe.product for m in record.cpe_matches if (cpe := parse_cpe(m.criteria))}
    return {PRODUCT_SYNONYMS.get(p, p) for p in products}


def match_generic(components: Iterable[Component], records: Iterable[VulnRecord]) -> list[Finding]:
    """Every finding of the records for the components (at most one per component and record).

    Components are indexed by product and by the CVEs their SBOM statements name, so a record is only evaluated
    against the components it can concern (a full feed of ~50,000 records against an image stays fast).
    """
    groups: dict[tuple[object, ...], list[Component]] = defaultdict(list)
    for c in components:  # binary packages of one recipe share every input of matching: evaluate them once
        p = _Prepared.of(c)
        groups[(p.keys, p.version, c.statements, c.is_kernel, c.compiled_sources)].append(c)
    members = list(groups.values())
    prepared = [_Prepared.of(g[0]) for g in members]
    by_product: dict[str, list[int]] = defaultdict(list)
    by_cve: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(prepared):
        for _, product in p.keys:
            by_product[product].append(i)
        for cve in p.statements:
            by_cve[cve].append(i)
    out = []
    for record in records:
        if record.state == "REJECTED":
            continue
        candidates = set(by_cve.get(record.id, ()))
        for product in _record_products(record):
            candidates.update(by_product.get(product, ()))
        for i in sorted(candidates):
            f = _match(prepared[i], record)
            if f is not None:
                out.append(f)
                out.extend(dataclasses.replace(f, component=other) for other in members[i][1:])
    return out
