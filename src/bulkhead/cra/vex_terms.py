"""The VEX vocabulary shared by OpenVEX, CycloneDX VEX and the server: statuses, justifications, one triage decision.

Statuses are OpenVEX's (`not_affected`, `affected`, `fixed`, `under_investigation`); a justification is a CycloneDX
`analysis.justification` or an OpenVEX justification, and each maps onto the other vocabulary for export.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = [
    "CYCLONEDX_JUSTIFICATIONS",
    "CYCLONEDX_TO_OPENVEX",
    "JUSTIFICATIONS",
    "OPENVEX_JUSTIFICATIONS",
    "OPENVEX_TO_CYCLONEDX",
    "STATUSES",
    "VexEntry",
    "VexTermError",
    "check_decision",
]

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
CYCLONEDX_JUSTIFICATIONS = tuple(CYCLONEDX_TO_OPENVEX)
# OpenVEX justification -> the CycloneDX one closest to it (CycloneDX has no "component not present": the code of
# a component that is not there is not present either)
OPENVEX_TO_CYCLONEDX = {
    "component_not_present": "code_not_present",
    "vulnerable_code_not_present": "code_not_present",
    "vulnerable_code_not_in_execute_path": "code_not_reachable",
    "vulnerable_code_cannot_be_controlled_by_adversary": "requires_environment",
    "inline_mitigations_already_exist": "protected_by_mitigating_control",
}
JUSTIFICATIONS = OPENVEX_JUSTIFICATIONS + CYCLONEDX_JUSTIFICATIONS


class VexTermError(ValueError):
    """A decision that VEX cannot express (the message says what to change)."""


def check_decision(status: str, justification: str | None, impact: str | None) -> None:
    """Raise VexTermError unless status, justification and impact statement make one valid VEX decision."""
    if status not in STATUSES:
        raise VexTermError(f"VEX status must be one of {', '.join(STATUSES)}, not {status!r}")
    if justification is not None and justification not in JUSTIFICATIONS:
        raise VexTermError(
            f"unknown justification {justification!r}: use an OpenVEX ({', '.join(OPENVEX_JUSTIFICATIONS)}) "
            f"or CycloneDX ({', '.join(CYCLONEDX_JUSTIFICATIONS)}) justification"
        )
    if justification is not None and status != "not_affected":
        raise VexTermError("a justification only goes with status not_affected")
    if status == "not_affected" and not justification and not impact:
        raise VexTermError("status not_affected needs a justification or an impact statement (OpenVEX requires one)")


@dataclass(frozen=True)
class VexEntry:
    """One triage decision as documents carry it: a product (compatible), a CVE, optionally one component (name and
    the version it was triaged against, or its purl), the status and why."""

    product: str
    cve: str
    status: str
    component: str | None = None
    component_version: str | None = None
    purl: str | None = None
    justification: str | None = None
    impact: str | None = None
    action: str | None = None
    at: dt.datetime | None = None
