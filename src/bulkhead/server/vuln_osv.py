"""The OSV records that may concern an app's components: looked up by their package URLs in the `osv` feed's index
(:class:`bulkhead.cra.osv_feed.OsvIndex`, records by ecosystem and package name)."""

from __future__ import annotations

from collections.abc import Iterable

from packageurl import PackageURL

from bulkhead.cra.match_osv import ECOSYSTEM_PURL_TYPE
from bulkhead.cra.model import Component
from bulkhead.cra.osv import OsvRecord
from bulkhead.cra.osv_feed import OsvIndex

__all__ = ["osv_candidates"]

_PURL_ECOSYSTEMS: dict[str, list[str]] = {}
for _eco, _ptype in ECOSYSTEM_PURL_TYPE.items():
    _PURL_ECOSYSTEMS.setdefault(_ptype, []).append(_eco)


def _purl_keys(purl: str) -> list[tuple[str, str]]:
    """(ecosystem, package name as OSV spells it) for each ecosystem the package URL's type may be."""
    try:
        p = PackageURL.from_string(purl)
    except ValueError:
        return []
    ns = p.namespace or ""
    out = []
    for eco in _PURL_ECOSYSTEMS.get(p.type, []):
        if p.type == "golang":
            name = f"{ns}/{p.name}" if ns else p.name
        elif p.type == "maven":
            name = f"{ns}:{p.name}"
        elif p.type == "npm" and ns:
            name = f"{ns if ns.startswith('@') else '@' + ns}/{p.name}"
        else:
            name = p.name
        out.append((eco, name))
    return out


def osv_candidates(components: Iterable[Component], index: OsvIndex) -> list[OsvRecord]:
    """The records that may concern the components (looked up by their package URLs), each once."""
    picked: dict[int, OsvRecord] = {}
    for c in components:
        for eco, name in _purl_keys(c.purl) if c.purl else ():
            for r in index.get(eco, name):
                picked[id(r)] = r
    return list(picked.values())
