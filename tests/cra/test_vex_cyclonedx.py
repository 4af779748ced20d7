"""CycloneDX VEX: decisions written as CycloneDX 1.6 (valid against its schema) and read back; third-party shapes;
documents that cannot be taken are refused naming the vulnerability."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from bulkhead.cra.vex_cyclonedx import CycloneDxVexError, read_cyclonedx_vex, write_cyclonedx_vex
from bulkhead.cra.vex_terms import VexEntry

AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
ENTRIES = [
    VexEntry("gw-a", "CVE-2024-36971", "not_affected", justification="code_not_reachable", impact="no IPv6 routes", at=AT),
    VexEntry("gw-a", "CVE-2024-5535", "fixed", "openssl", "3.2.3", "pkg:generic/openssl@3.2.3", at=AT),
    VexEntry("gw-a", "CVE-2024-5535", "affected", "openssl", "3.2.1", action="update to release 7", at=AT),
    VexEntry("gw-b", "CVE-2023-45853", "not_affected", "zlib", "1.3.1",
             justification="vulnerable_code_not_present", impact="minizip is not built", at=AT),
    VexEntry("gw-b", "CVE-2024-3094", "under_investigation", at=AT),
]  # fmt: skip


def _key(e: VexEntry) -> tuple[Any, ...]:
    return (e.product, e.cve, e.component, e.component_version, e.status)


def test_written_document_is_valid_cyclonedx_1_6_and_reads_back() -> None:
    doc = write_cyclonedx_vex(ENTRIES, "acme (user:ann)")
    assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6")
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    assert error is None, error
    states = {(v["id"], v["affects"][0]["ref"]): v["analysis"]["state"] for v in doc["vulnerabilities"]}
    assert states[("CVE-2024-5535", "pkg:generic/gw-a#openssl@3.2.3")] == "resolved"
    assert states[("CVE-2024-5535", "pkg:generic/gw-a#openssl@3.2.1")] == "exploitable"
    assert states[("CVE-2024-3094", "pkg:generic/gw-b")] == "in_triage"
    zlib = next(v for v in doc["vulnerabilities"] if v["id"] == "CVE-2023-45853")
    assert zlib["analysis"]["justification"] == "code_not_present"  # the OpenVEX term in CycloneDX words
    assert doc["metadata"]["authors"] == [{"name": "acme (user:ann)"}]

    back = read_cyclonedx_vex(doc, None)
    assert sorted(map(_key, back)) == sorted(map(_key, ENTRIES))
    fixed = next(e for e in back if e.status == "fixed")
    assert fixed.purl == "pkg:generic/openssl@3.2.3"
    affected = next(e for e in back if e.status == "affected")
    assert affected.action == "update to release 7"
    reachable = next(e for e in back if e.cve == "CVE-2024-36971")
    assert (reachable.justification, reachable.impact, reachable.component) == ("code_not_reachable", "no IPv6 routes", None)


def test_a_third_party_vex_with_the_product_in_metadata() -> None:
    """The shape Dependency-Track and most tools write: metadata.component is the product, components flat."""
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {"component": {"type": "firmware", "name": "gw-a", "version": "7", "bom-ref": "product"}},
        "components": [{"type": "library", "name": "openssl", "version": "3.2.1", "bom-ref": "ossl",
                        "purl": "pkg:generic/openssl@3.2.1"}],
        "vulnerabilities": [
            {"id": "CVE-2024-5535", "analysis": {"state": "false_positive"}, "affects": [{"ref": "ossl"}]},
            {"id": "CVE-2024-36971", "analysis": {"state": "not_affected", "justification": "requires_configuration",
                                                 "responses": ["will_not_fix"]}, "affects": [{"ref": "product"}]},
            {"id": "CVE-2024-6387", "analysis": {"state": "exploitable", "responses": ["update", "workaround_available"]},
             "affects": [{"ref": "pkg:generic/openssh@9.6p1"}]},
        ],
    }  # fmt: skip
    got = {e.cve: e for e in read_cyclonedx_vex(doc, None)}
    ossl = got["CVE-2024-5535"]
    assert (ossl.product, ossl.component, ossl.component_version, ossl.status) == ("gw-a", "openssl", "3.2.1", "not_affected")
    assert ossl.impact and "false positive" in ossl.impact and ossl.purl == "pkg:generic/openssl@3.2.1"
    assert (got["CVE-2024-36971"].product, got["CVE-2024-36971"].component) == ("gw-a", None)
    ssh = got["CVE-2024-6387"]  # a purl the document does not list: no product to put it under without one
    assert ssh.status == "affected" and ssh.action == "CycloneDX responses: update, workaround_available"
    assert (ssh.product, ssh.component, ssh.component_version) == ("gw-a", "openssh", "9.6p1")
    # an explicit product takes every decision, the metadata component standing for it
    assert {(e.product, e.component) for e in read_cyclonedx_vex(doc, "gw-z")} == {
        ("gw-z", "openssl"), ("gw-z", None), ("gw-z", "openssh")
    }  # fmt: skip


BASE = write_cyclonedx_vex(ENTRIES[:1], "t")


def _broken(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"statements": []}, 'bomFormat must be "CycloneDX"'),
        (_broken(lambda d: d.pop("vulnerabilities")), "has no vulnerabilities"),
        (_broken(lambda d: d["vulnerabilities"][0].pop("analysis")),
         "vulnerability CVE-2024-36971 (bom-ref vex-1): analysis.state is missing"),
        (_broken(lambda d: d["vulnerabilities"][0]["analysis"].update(state="maybe")), "cannot be read"),
        (_broken(lambda d: d["vulnerabilities"][0]["analysis"].update(justification="trust_me")), "cannot be read"),
        (_broken(lambda d: d["vulnerabilities"][0]["analysis"].pop("justification") and
                 d["vulnerabilities"][0]["analysis"].pop("detail")), "needs a justification or an impact statement"),
        (_broken(lambda d: d["vulnerabilities"][0]["analysis"].update(state="resolved")), "only goes with status not_affected"),
        (_broken(lambda d: d["vulnerabilities"][0].update(affects=[{"ref": "nowhere"}])),
         "affects ref 'nowhere' names no component"),
        (_broken(lambda d: d["vulnerabilities"][0].pop("affects")), "affects is missing"),
        (_broken(lambda d: d["vulnerabilities"][0].pop("id")), "id is missing"),
    ],
)  # fmt: skip
def test_documents_that_cannot_be_taken_are_refused_naming_what_to_fix(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(CycloneDxVexError) as e:
        read_cyclonedx_vex(doc, None)
    assert message in str(e.value)
