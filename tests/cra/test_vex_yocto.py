"""Yocto CVE_STATUS reasons and SBOM VEX statements as VEX decisions: the one table, and the real scarthgap SBOM."""

from __future__ import annotations

from typing import Any

import pytest

from bulkhead.cra.components import read_spdx3
from bulkhead.cra.model import FindingStatus, SbomVulnStatement
from bulkhead.cra.vex_terms import CYCLONEDX_TO_OPENVEX, STATUSES, check_decision
from bulkhead.cra.vex_yocto import YOCTO_REASONS, sbom_decision

F = FindingStatus


@pytest.mark.parametrize(
    ("reason", "status", "justification"),
    [
        # Yocto's meta/conf/cve-check-map.conf: Patched
        ("fixed-version", "fixed", None),
        ("backported-patch", "fixed", None),
        ("cpe-stable-backport", "fixed", None),
        # Ignored
        ("cpe-incorrect", "not_affected", "code_not_present"),
        ("not-applicable-config", "not_affected", "requires_configuration"),
        ("not-applicable-platform", "not_affected", "requires_environment"),
        ("disputed", "not_affected", None),
        ("upstream-wontfix", "not_affected", None),
        # cve-check's own details and create-spdx's "CVEs fixed"
        ("patched", "fixed", None),
        ("version-not-in-range", "not_affected", "code_not_present"),
        ("yocto-patched", "fixed", None),
        # Unpatched
        ("vulnerable-investigating", "under_investigation", None),
    ],
)
def test_each_yocto_reason_maps_to_one_vex_decision(reason: str, status: str, justification: str | None) -> None:
    assert YOCTO_REASONS[reason][:2] == (status, justification)
    # the reason may come as the statement's justification or lead its detail ("fixed-version: Fixed from version 1.2")
    for st in (
        SbomVulnStatement("CVE-2024-0001", F.NOT_AFFECTED, reason, None),
        SbomVulnStatement("CVE-2024-0001", F.FIXED, None, f"{reason}: Fixed from version 1.2"),
    ):
        d = sbom_decision(st)
        assert d is not None and (d.status, d.justification) == (status, justification)
        assert d.impact and d.impact.startswith(f"Yocto CVE_STATUS {reason}")
        check_decision(d.status, d.justification, d.impact)  # a valid VEX decision (not_affected has a reason)


def test_the_table_is_in_the_vex_vocabulary_and_affected_is_not_imported() -> None:
    for status, justification, meaning in YOCTO_REASONS.values():
        assert status in STATUSES and meaning
        assert justification is None or justification in CYCLONEDX_TO_OPENVEX  # CycloneDX terms, mapped for OpenVEX
    for reason in ("unpatched", "version-in-range"):
        assert sbom_decision(SbomVulnStatement("CVE-2024-0001", F.AFFECTED, reason, None)) is None
    assert sbom_decision(SbomVulnStatement("CVE-2024-0001", F.AFFECTED, None, "exploitable")) is None


def test_sbom_vex_justifications_are_kept_spdx3_camel_case_too() -> None:
    d = sbom_decision(SbomVulnStatement("CVE-2023-45853", F.NOT_AFFECTED, "vulnerableCodeNotPresent", "we don't build minizip"))
    assert d is not None and (d.status, d.justification) == ("not_affected", "vulnerable_code_not_present")
    assert d.impact is not None and "we don't build minizip" in d.impact
    d = sbom_decision(SbomVulnStatement("CVE-2024-1086", F.NOT_AFFECTED, "code_not_reachable", "nf_tables is not built"))
    assert d is not None and d.justification == "code_not_reachable"
    # a bare not_affected is recorded as the SBOM's word (OpenVEX needs an impact statement: it names the SBOM)
    d = sbom_decision(SbomVulnStatement("CVE-2024-0002", F.NOT_AFFECTED, None, None))
    assert d is not None and (d.justification, d.impact) == (None, "the SBOM says not_affected")
    # an unknown term is kept as words, not as a justification
    d = sbom_decision(SbomVulnStatement("CVE-2024-0003", F.NOT_AFFECTED, "trustMe", None))
    assert d is not None and d.justification is None and d.impact is not None and "trustMe" in d.impact


def test_every_statement_of_the_scarthgap_spdx3_sbom_becomes_a_vex_decision(spdx3_doc: dict[str, Any]) -> None:
    statements = [(c, s) for c in read_spdx3(spdx3_doc) for s in c.statements]
    assert statements
    decisions = [(c, s, sbom_decision(s)) for c, s in statements]
    assert all(d is not None for _, _, d in decisions)
    by_status = {s.status.value for _, s, _ in decisions}
    assert by_status == {d.status for _, _, d in decisions if d is not None} == {"fixed", "not_affected"}
    minizip = next(d for c, s, d in decisions if c.name == "libz1" and s.cve == "CVE-2023-45853")
    assert minizip is not None and minizip.justification == "vulnerable_code_not_present"
