"""What an SBOM says about a CVE (Yocto cve-check / CVE_STATUS, SPDX 3 and CycloneDX VEX) as one VEX decision.

Yocto marks a CVE of a recipe with a CVE_STATUS reason (meta/conf/cve-check-map.conf) that cve-check reports as
Patched, Ignored or Unpatched; create-spdx writes the patched ones ("CVEs fixed", SPDX 3 VexFixed) and the ignored
ones (SPDX 3 VexNotAffected with the reason's description). YOCTO_REASONS is the one table from those reasons to
the VEX vocabulary (status and CycloneDX justification); reasons that say "still vulnerable" give no decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .model import SbomVulnStatement
from .vex_terms import JUSTIFICATIONS, VexTermError, check_decision

__all__ = ["YOCTO_REASONS", "SbomDecision", "sbom_decision"]


@dataclass(frozen=True)
class SbomDecision:
    status: str
    justification: str | None
    impact: str | None


# Yocto reason -> (status, CycloneDX justification or None, what it means). cve-check's own details are here too
# ("patched": a patch file names the CVE; "version-not-in-range": the recipe's version is outside the CVE's ranges;
# "yocto-patched": create-spdx's "CVEs fixed" list, which holds the Patched ones).
YOCTO_REASONS: dict[str, tuple[str, str | None, str]] = {
    # Patched
    "fixed-version": ("fixed", None, "the recipe's version already contains the fix"),
    "backported-patch": ("fixed", None, "the fix is backported as a patch of the recipe"),
    "cpe-stable-backport": ("fixed", None, "the fix came with a stable-branch update"),
    "patched": ("fixed", None, "a patch of the recipe fixes it"),
    "yocto-patched": ("fixed", None, "Yocto lists it as fixed by the recipe"),
    "version-not-in-range": ("not_affected", "code_not_present", "the recipe's version is outside the affected range"),
    # Ignored
    "cpe-incorrect": ("not_affected", "code_not_present", "the CVE's CPE names another product than this recipe"),
    "not-applicable-config": ("not_affected", "requires_configuration", "the vulnerable code is not built in this configuration"),
    "not-applicable-platform": ("not_affected", "requires_environment", "the CVE is about another platform"),
    "disputed": ("not_affected", None, "upstream disputes that it is a vulnerability"),
    "upstream-wontfix": ("not_affected", None, "upstream does not consider it a vulnerability to fix"),
    # Unpatched: still vulnerable, or not decided
    "vulnerable-investigating": ("under_investigation", None, "the vulnerability is being investigated"),
    "unpatched": ("affected", None, "no fix is applied"),
    "version-in-range": ("affected", None, "the recipe's version is in the affected range"),
}
_AFFECTED = ("affected",)  # not imported: a statement that something is affected is the matcher's job
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _reason(text: str | None) -> str | None:
    """The Yocto reason a justification or detail starts with ("fixed-version: Fixed from version 1.2" -> fixed-version)."""
    if not text:
        return None
    head = text.split(":", 1)[0].strip().lower()
    return head if head in YOCTO_REASONS else None


def _vex_justification(text: str | None) -> str | None:
    """A justification in the VEX vocabularies, also SPDX 3's camelCase (vulnerableCodeNotPresent)."""
    if not text:
        return None
    snake = _CAMEL.sub("_", text.strip()).lower()
    return snake if snake in JUSTIFICATIONS else None


def sbom_decision(st: SbomVulnStatement) -> SbomDecision | None:
    """The VEX decision an SBOM statement stands for; None when it states nothing to record (affected) or cannot be
    expressed as one."""
    reason = _reason(st.justification) or _reason(st.detail)
    detail = (st.detail or "").strip() or None
    if reason is not None:
        status, justification, meaning = YOCTO_REASONS[reason]
        stated = detail if detail and detail.lower().startswith(reason) else f"{reason}: {detail or meaning}"
        impact = f"Yocto CVE_STATUS {stated}"
    else:
        status = st.status.value
        justification = _vex_justification(st.justification)
        said = st.justification if st.justification and justification is None else None
        impact = "; ".join(x for x in (f"the SBOM says {status}" + (f" ({said})" if said else ""), detail) if x)
    if status in _AFFECTED:
        return None
    if status != "not_affected":
        justification = None
    try:
        check_decision(status, justification, impact)
    except VexTermError:
        return None
    return SbomDecision(status, justification, impact[:4000] if impact else None)
