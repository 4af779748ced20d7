"""The OSV matcher: components with package URLs (app ecosystems, distribution packages) x OSV records → findings.

A record's affected package applies when its ecosystem is the purl's type (Go → golang, PyPI → pypi, npm, crates.io
→ cargo, Maven, Debian/Ubuntu → deb, …), its name is the purl's (Go module path, Maven group:artifact, PyPI's
normalised name; the source package for distributions, whose OSV records name source packages) and, for a
distribution, its release is the component's. The version is evaluated in the ecosystem's order (univers: Go,
semver, PEP 440, dpkg, …) against the explicit `versions` list and the SEMVER/ECOSYSTEM range events walked in
order (introduced / fixed / last_affected / limit); GIT ranges are skipped. Inside a range → affected; past a
`fixed` event → fixed with that version; otherwise not affected. Withdrawn records give nothing. The finding's
CVE is each CVE id the record is about (aliases, or `related` for distribution records), else the OSV id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cmp_to_key

from packageurl import PackageURL
from univers import versions as uv
from univers.version_range import RANGE_CLASS_BY_SCHEMES

from .components._common import DEBIAN_CODENAMES
from .model import Component, Finding, FindingStatus
from .osv import OsvAffected, OsvRange, OsvRecord
from .osv_severity import osv_severity
from .versions import compare as loose_compare

__all__ = ["match_osv"]

ECOSYSTEM_PURL_TYPE = {
    "Go": "golang",
    "PyPI": "pypi",
    "npm": "npm",
    "crates.io": "cargo",
    "Maven": "maven",
    "NuGet": "nuget",
    "RubyGems": "gem",
    "Packagist": "composer",
    "Hex": "hex",
    "Debian": "deb",
    "Ubuntu": "deb",
    "Alpine": "apk",
}


def _purl_name(p: PackageURL) -> str:
    ns = p.namespace or ""
    if p.type == "golang":
        return f"{ns}/{p.name}" if ns else p.name
    if p.type == "maven":
        return f"{ns}:{p.name}"
    if p.type == "npm" and ns:
        return f"{ns if ns.startswith('@') else '@' + ns}/{p.name}"
    if p.type == "pypi":
        return re.sub(r"[-_.]+", "-", p.name).lower()
    return p.name


def _osv_name(a: OsvAffected, ptype: str) -> str:
    return re.sub(r"[-_.]+", "-", a.name).lower() if ptype == "pypi" else a.name


def _release_matches(release: str, c: Component) -> bool:
    if not release or not c.distro_release:
        return True  # the record or the component does not say: the package name decides
    number = release.split(":", 1)[0]
    return c.distro_release in (number, DEBIAN_CODENAMES.get(number))


def _applies(c: Component, p: PackageURL, a: OsvAffected) -> bool:
    base, _, release = a.ecosystem.partition(":")
    ptype = ECOSYSTEM_PURL_TYPE.get(base)
    if ptype is None or ptype != p.type:
        return False
    if ptype == "deb":
        distro = (p.namespace or c.distro or "").lower()
        quals = p.qualifiers if isinstance(p.qualifiers, dict) else {}
        source = c.source_name or quals.get("upstream")
        return distro == base.lower() and a.name in {source, p.name} and _release_matches(release, c)
    return _osv_name(a, ptype) == _purl_name(p)


def _cmp(a: str, b: str, ptype: str, range_type: str) -> int:
    scheme = uv.SemverVersion if range_type == "SEMVER" else RANGE_CLASS_BY_SCHEMES[ptype].version_class
    cls: type[uv.Version] = scheme or uv.RpmVersion
    if ptype == "golang" or range_type == "SEMVER":
        a, b = a.removeprefix("v"), b.removeprefix("v")
    try:
        va, vb = cls(a), cls(b)
        return (va > vb) - (va < vb)
    except Exception:  # univers raises several types for versions outside a scheme
        return loose_compare(a, b) or 0


def _walk(v: str, r: OsvRange, ptype: str) -> tuple[bool, str | None]:
    """(inside a range, the last `fixed` at or below v) for one SEMVER/ECOSYSTEM range."""

    def order(x: tuple[str, str], y: tuple[str, str]) -> int:
        if x[1] == "0" or y[1] == "0":  # introduced "0" is the beginning of time
            return (x[1] != "0") - (y[1] != "0")
        return _cmp(x[1], y[1], ptype, r.type)

    events = sorted(r.events, key=cmp_to_key(order))
    inside, fixed = False, None
    for kind, at in events:
        c = 1 if at == "0" else _cmp(v, at, ptype, r.type)
        if kind == "introduced" and c >= 0:
            inside = True
        elif kind == "fixed" and c >= 0:
            inside, fixed = False, at
        elif (kind == "last_affected" and c > 0) or (kind == "limit" and c >= 0):
            inside = False
    return inside, fixed


def _verdict(v: str, a: OsvAffected, ptype: str) -> tuple[FindingStatus, str, str | None]:
    if v in a.versions:
        return FindingStatus.AFFECTED, f"version {v} is listed as affected ({a.ecosystem} {a.name})", None
    fixes: list[tuple[str, str]] = []
    for r in a.ranges:
        if r.type not in ("SEMVER", "ECOSYSTEM"):
            continue
        inside, fixed = _walk(v, r, ptype)
        if inside:
            events = ", ".join(f"{k} {x}" for k, x in r.events)
            return FindingStatus.AFFECTED, f"version {v} in {r.type} range {events} ({a.ecosystem} {a.name})", None
        if fixed:
            fixes.append((fixed, r.type))
    if fixes:

        def by_version(x: tuple[str, str], y: tuple[str, str]) -> int:
            return _cmp(x[0], y[0], ptype, x[1])

        best = max(fixes, key=cmp_to_key(by_version))
        return FindingStatus.FIXED, f"version {v} is at or past the fix {best[0]} ({a.ecosystem} {a.name})", best[0]
    return FindingStatus.NOT_AFFECTED, f"version {v} outside the affected ranges ({a.ecosystem} {a.name})", None


def match_osv(components: Iterable[Component], records: Iterable[OsvRecord]) -> list[Finding]:
    """Findings of OSV records for the components that carry a purl."""
    with_purl = []
    for c in components:
        if not c.purl:
            continue
        try:
            with_purl.append((c, PackageURL.from_string(c.purl)))
        except ValueError:
            continue
    out = []
    for record in records:
        if record.withdrawn is not None:
            continue
        for c, p in with_purl:
            for a in record.affected:
                if not _applies(c, p, a):
                    continue
                ptype = ECOSYSTEM_PURL_TYPE[a.ecosystem.partition(":")[0]]
                status, reason, fixed = _verdict(p.version or c.version, a, ptype)
                severity, score = osv_severity(record)
                for cve in record.cves or (record.id,):
                    out.append(Finding(cve, c, status, f"{record.id}: {reason}", fixed, "osv", c.is_kernel, severity, score))
                break
    return out
