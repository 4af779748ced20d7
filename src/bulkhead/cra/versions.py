"""Version order for the generic matcher, from univers: which version a component is, and whether a range holds it.

Comparison uses univers' scheme for the record's `versionType` (rpm, python/pypi, semver) when both sides parse
in it, and rpm's segment order otherwise (univers RpmVersion: 6.10 > 6.6.21, 1.1.1y > 1.1.1, 9.7p1 > 8.5p1;
univers' GenericVersion is not used: it orders 6.6.21 after 6.10). `git` commit ranges cannot be compared with
release versions and evaluate to "unknown".
"""

from __future__ import annotations

import re
from functools import lru_cache

from univers import versions as uv

from .cpe import parse_cpe
from .model import Component
from .vulnrecord import CpeMatch, VersionEntry

__all__ = ["compare", "component_version", "constraint_contains", "entry_contains", "in_cpe_range"]

_SCHEMES: dict[str, type[uv.Version]] = {
    "rpm": uv.RpmVersion,
    "python": uv.PypiVersion,
    "pypi": uv.PypiVersion,
    "semver": uv.SemverVersion,
}
_NO_VERSION = {"", "n/a", "unspecified", "unknown", "*", "-"}
_CONSTRAINT = re.compile(r"^\s*(<=|>=|<|>|=)?\s*v?(\S+?)\s*$")


@lru_cache(maxsize=65536)
def _parse(text: str, scheme: str | None) -> uv.Version | None:
    cls = _SCHEMES.get(scheme or "", uv.RpmVersion)
    try:
        return cls(text)
    except Exception:  # univers raises InvalidVersion, ValueError or TypeError depending on the scheme
        return None


@lru_cache(maxsize=262144)  # the same (installed, bound) pairs recur across releases and records
def compare(a: str, b: str, scheme: str | None = None) -> int | None:
    """-1, 0 or 1 as a <, =, > b; None when the two cannot be ordered."""
    a, b = a.strip().removeprefix("v"), b.strip().removeprefix("v")
    for s in (scheme, None) if scheme in _SCHEMES else (None,):
        va, vb = _parse(a, s), _parse(b, s)
        if va is not None and vb is not None:
            try:
                return (va > vb) - (va < vb)
            except TypeError:
                continue
    return None


def component_version(c: Component) -> str:
    """The upstream version to match: the CPE's version when the SBOM gives one (Yocto writes 6.6.21 for 6.6.21+git),
    else the version without Yocto's `+git…`/`-rN` or Debian's epoch and revision."""
    for text in c.cpes:
        cpe = parse_cpe(text)
        if cpe and cpe.version not in _NO_VERSION:
            return cpe.version
    v = c.version.split("+git", 1)[0]
    v = re.sub(r"-r\d+(\.\d+)?$", "", v)
    if c.distro == "debian" or (c.purl or "").startswith("pkg:deb/"):
        v = v.split(":", 1)[-1].rsplit("-", 1)[0]
    return v


def _below(v: str, limit: str, inclusive: bool, scheme: str | None) -> bool | None:
    if limit == "*":
        return True
    if limit.endswith(".*"):  # kernel CNA: "lessThanOrEqual": "6.6.*" is the whole 6.6 series
        prefix = limit[:-2]
        if v == prefix or v.startswith(prefix + "."):
            return True
        c = compare(v, prefix, scheme)
        return None if c is None else c < 0
    c = compare(v, limit, scheme)
    return None if c is None else (c <= 0 if inclusive else c < 0)


def constraint_contains(v: str, text: str, scheme: str | None = None) -> bool | None:
    """Does `v` satisfy a constraint list such as "< 1.15.2" or ">= v1.0.0-rc93, < 1.1.12" (GitHub CNA style)?"""
    result = True
    for part in text.split(","):
        m = _CONSTRAINT.match(part)
        if not m:
            return None
        op, bound = m.group(1) or "=", m.group(2)
        c = compare(v, bound, scheme)
        if c is None:
            return None
        result = result and {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0, "=": c == 0}[op]
    return result


def entry_contains(v: str, e: VersionEntry) -> bool | None:
    """Does a CVE 5 versions item cover version `v`? None when it cannot be evaluated (git, n/a, unparsable)."""
    if (e.version_type or "").lower() == "git" or e.version.strip().lower() in _NO_VERSION:
        return None
    scheme = (e.version_type or "").lower() or None
    if any(ch in e.version for ch in "<>=") and not (e.less_than or e.less_than_or_equal):
        return constraint_contains(v, e.version, scheme)
    upper, inclusive = (e.less_than, False) if e.less_than else (e.less_than_or_equal, True)
    if upper is None:
        c = compare(v, e.version, scheme)
        return None if c is None else c == 0
    if e.version not in ("0", "0.0", "0.0.0"):
        c = compare(v, e.version, scheme)
        if c is None:
            return None
        if c < 0:
            return False
    return _below(v, upper, inclusive, scheme)


def in_cpe_range(v: str, m: CpeMatch) -> bool | None:
    """Does an NVD cpeMatch cover version `v` (a fixed version in the criteria, or a start/end range)?"""
    cpe = parse_cpe(m.criteria)
    if cpe is None:
        return None
    if cpe.version not in ("*", "-"):
        c = compare(v, cpe.version)
        return None if c is None else c == 0
    checks: tuple[tuple[str | None, tuple[int, ...]], ...] = (  # (bound, the comparison results inside the range)
        (m.version_start_including, (0, 1)),
        (m.version_start_excluding, (1,)),
        (m.version_end_including, (-1, 0)),
        (m.version_end_excluding, (-1,)),
    )
    for bound, inside in checks:
        if bound is None:
            continue
        c = compare(v, bound)
        if c is None:
            return None
        if c not in inside:
            return False
    return True
