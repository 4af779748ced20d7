"""VEX on a live server beyond OpenVEX: CycloneDX VEX import and export, statements carried forward while the
component keeps the version they were triaged against, and what the SBOM says (Yocto CVE_STATUS, SBOM VEX) kept as
VEX records under a person's. Fixtures: vuln_fixtures.py (derived from the shared testdata)."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from tests.server.conftest import LiveServer
from tests.server.test_schemas import Checker
from tests.server.test_vulns import _feeds, checked
from tests.server.vuln_fixtures import (
    CDX_YOCTO,
    DEBIAN,
    OLD_SSL,
    YOCTO,
    Lab,
    cves,
    debian_sbom,
    device,
    make_lab,
    release,
    report,
    scan,
)

CVE = "CVE-2024-5535"
MID_SSL = "3.0.13-1~deb12u1"  # still before the fix (3.0.14-1~deb12u1): release 2 is affected too, by another version


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("vex"))


@pytest.fixture(scope="module")
def checker(server: LiveServer) -> Checker:
    return Checker(httpx.get(server.url + "/openapi.json").json())


def _shown(c: httpx.Client, cve: str = CVE) -> dict[str, Any]:
    r = c.get(f"/api/v1/vulnerabilities/{cve}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _by_release(shown: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["release"]: f for f in shown["findings"]}


def test_a_component_statement_applies_while_the_component_keeps_its_version(
    server: LiveServer, lab: Lab, checker: Checker
) -> None:
    with checked(server, checker, server.tenant(ca=lab.pki.ca)) as c:
        _feeds(server, lab)
        release(c, lab, DEBIAN, "1", debian_sbom(OLD_SSL))
        release(c, lab, DEBIAN, "2", debian_sbom(MID_SSL))
        one, one_auth = device(c, DEBIAN)
        two, two_auth = device(c, DEBIAN)
        report(c, one, one_auth, "1")
        report(c, two, two_auth, "2")
        scan(c)
        assert _shown(c)["exposure"]["devices"] == 2

        # triaged against libssl3 of release 1: release 1 and its device are not affected, release 2 still is
        body = {"compatible": DEBIAN, "cve": CVE, "component": "libssl3", "component_version": OLD_SSL,
                "status": "not_affected", "justification": "code_not_reachable"}  # fmt: skip
        r = c.put("/api/v1/vex", json=body)
        assert r.status_code == 201, r.text
        old = r.json()
        assert (old["component"], old["component_version"], old["origin"]) == ("libssl3", OLD_SSL, "user")
        shown = _shown(c)
        rel = _by_release(shown)
        assert (rel["1"]["status"], rel["1"]["vex_id"], rel["1"]["vex_note"]) == ("not_affected", old["id"], None)
        assert (rel["2"]["status"], rel["2"]["vex_id"]) == ("affected", None)
        assert f"VEX statement {old['id']} (not_affected) was made for libssl3 {OLD_SSL}" in rel["2"]["vex_note"]
        assert MID_SSL in rel["2"]["vex_note"]
        assert shown["exposure"]["devices"] == 1 and cves(c, device=two)[CVE]["status"] == "affected"
        assert cves(c, device=one)[CVE]["status"] == "not_affected"
        scan(c)  # a rescan (releases and devices matched again) carries the statement forward the same way
        assert [f["status"] for f in _shown(c)["findings"]] == ["not_affected", "affected"]

        # a statement given by purl names the component and version; without a version it takes the newest
        # release's: both versions are triaged now, each by its own statement
        r = c.put("/api/v1/vex", json={"compatible": DEBIAN, "cve": CVE, "status": "not_affected",
                                       "purl": f"pkg:deb/debian/libssl3@{MID_SSL}?arch=amd64",
                                       "impact_statement": "NPN is not used"})  # fmt: skip
        assert r.status_code == 201, r.text
        assert (r.json()["component"], r.json()["component_version"]) == ("libssl3", MID_SSL)
        assert r.json()["purl"].startswith("pkg:deb/debian/libssl3@")
        shown = _shown(c)
        assert shown["exposure"]["devices"] == 0 and {f["vex_note"] for f in shown["findings"]} == {None}
        r = c.put("/api/v1/vex", json=body | {"component_version": None, "status": "affected", "justification": None})
        assert r.status_code == 200 and r.json()["component_version"] == MID_SSL  # the newest release's: replaced
        assert _shown(c)["exposure"]["devices"] == 1

        r = c.put("/api/v1/vex", json=body | {"component_version": "*"})  # asked for: every version of the component
        assert r.status_code == 201 and r.json()["component_version"] is None, r.text
        assert [f["status"] for f in _shown(c)["findings"]] == ["not_affected", "affected"]  # the versioned ones win

        # a product-wide statement keeps today's behaviour: every version, under the component statements
        r = c.put("/api/v1/vex", json={"compatible": DEBIAN, "cve": CVE, "status": "fixed"})
        assert r.status_code == 201 and r.json()["component_version"] is None
        assert [f["status"] for f in _shown(c)["findings"]] == ["not_affected", "affected"]


def test_cyclonedx_vex_export_and_import_all_or_none_audited(server: LiveServer, lab: Lab, checker: Checker) -> None:
    with checked(server, checker, server.tenant(ca=lab.pki.ca)) as c:
        _feeds(server, lab)
        release(c, lab, DEBIAN, "1", debian_sbom(OLD_SSL))
        d, d_auth = device(c, DEBIAN)
        report(c, d, d_auth, "1")
        scan(c)
        for body in (
            {"compatible": DEBIAN, "cve": CVE, "component": "libssl3", "status": "not_affected",
             "justification": "vulnerable_code_not_in_execute_path", "impact_statement": "NPN is not used"},
            {"compatible": DEBIAN, "cve": "CVE-2024-3094", "status": "under_investigation"},
        ):  # fmt: skip
            assert c.put("/api/v1/vex", json=body).status_code == 201
        doc = c.get("/api/v1/vex/export", params={"format": "cyclonedx", "compatible": DEBIAN}).json()
        assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6")
        vulns = {v["id"]: v for v in doc["vulnerabilities"]}
        assert vulns[CVE]["analysis"] | {"firstIssued": None, "lastUpdated": None} == {
            "state": "not_affected", "justification": "code_not_reachable", "detail": "NPN is not used",
            "firstIssued": None, "lastUpdated": None,
        }  # fmt: skip
        assert vulns[CVE]["affects"] == [{"ref": f"pkg:generic/{DEBIAN}#libssl3@{OLD_SSL}"}]
        assert vulns["CVE-2024-3094"]["analysis"]["state"] == "in_triage"
        [product] = doc["components"]
        assert product["name"] == DEBIAN and product["components"][0]["version"] == OLD_SSL
        assert c.get("/api/v1/audit", params={"action": "vex.export"}).json()[0]["details"]["format"] == "cyclonedx"

        # withdrawn, then imported back from the CycloneDX document (format detected): the same decisions
        for v in c.get("/api/v1/vex").json():
            assert c.delete(f"/api/v1/vex/{v['id']}").status_code == 204
        assert _shown(c)["exposure"]["devices"] == 1
        r = c.post("/api/v1/vex/import", json=doc)
        assert r.status_code == 200, r.text
        back = {v["cve"]: v for v in r.json()}
        assert (back[CVE]["component"], back[CVE]["component_version"], back[CVE]["status"]) == (
            "libssl3",
            OLD_SSL,
            "not_affected",
        )
        assert back[CVE]["justification"] == "code_not_reachable" and back[CVE]["impact_statement"] == "NPN is not used"
        assert back["CVE-2024-3094"]["status"] == "under_investigation"
        assert _shown(c)["exposure"]["devices"] == 0
        [event] = c.get("/api/v1/audit", params={"action": "vex.import"}).json()
        assert event["details"]["format"] == "cyclonedx" and event["details"]["statements"] == 2
        assert event["details"]["document"] == doc["serialNumber"]

        # bad input: a clear 4xx naming what to fix, and nothing changes (not even the statements before the bad one)
        before = c.get("/api/v1/vex").json()
        bad_state = copy.deepcopy(doc)
        bad_state["vulnerabilities"].append({"id": "CVE-2024-6387", "analysis": {"state": "not_affected"},
                                             "affects": [{"ref": f"pkg:generic/{DEBIAN}"}]})  # fmt: skip
        bad_ref = copy.deepcopy(doc)
        bad_ref["vulnerabilities"][0]["affects"] = [{"ref": "somewhere-else"}]
        unknown_product = copy.deepcopy(doc)
        unknown_product["components"][0]["name"] = "no-such-product"
        for body, params, status, message in (
            (bad_state, {}, 400, "vulnerability CVE-2024-6387"),
            (bad_ref, {}, 400, "affects ref 'somewhere-else' names no component"),
            (doc | {"vulnerabilities": [{"id": CVE, "analysis": {"state": "maybe"}, "affects": [{"ref": "x"}]}]}, {}, 400,
             "check it against the CycloneDX 1.6 schema"),
            (doc, {"format": "openvex"}, 400, "the document is cyclonedx, not openvex"),
            (doc, {"format": "csaf"}, 422, "format"),
            ({"bomFormat": "SPDX"}, {}, 400, "neither an OpenVEX document"),
            (unknown_product, {}, 404, "no release or device of compatible 'no-such-product'"),
        ):  # fmt: skip
            r = c.post("/api/v1/vex/import", json=body, params=params)
            assert r.status_code == status and message in r.json()["message"], r.text
            assert set(r.json()) >= {"error", "message"}
        assert c.get("/api/v1/vex").json() == before
        assert len(c.get("/api/v1/audit", params={"action": "vex.import"}).json()) == 1
        r = c.get("/api/v1/vex/export", params={"format": "spdx"})
        assert r.status_code == 422, r.text
        r = c.put("/api/v1/vex", json={"compatible": DEBIAN, "cve": CVE, "status": "affected", "purl": "not a purl"})
        assert r.status_code == 400 and "is not a package URL" in r.json()["message"], r.text
        r = c.put("/api/v1/vex", json={"compatible": DEBIAN, "cve": CVE, "status": "affected", "component_version": "1"})
        assert r.status_code == 400 and "needs the component" in r.json()["message"], r.text
        assert c.get("/api/v1/vex").json() == before


def _yocto_sbom_with_cve_status() -> bytes:
    """The Yocto CycloneDX subset (vuln_fixtures) with one more CVE its SBOM ignores: CVE-2024-3094 on busybox with
    CVE_STATUS cpe-incorrect, as Yocto's detail text writes it (derived for this test)."""
    doc = json.loads(CDX_YOCTO.read_text())
    busybox = next(c for c in doc["components"] if c["name"] == "busybox")
    doc["vulnerabilities"].append(
        {"id": "CVE-2024-3094", "analysis": {"state": "not_affected", "detail": "cpe-incorrect: xz, not busybox"},
         "affects": [{"ref": busybox["bom-ref"]}]}
    )  # fmt: skip
    return json.dumps(doc).encode()


def test_what_the_sbom_says_becomes_vex_records_under_a_persons(server: LiveServer, lab: Lab, checker: Checker) -> None:
    with checked(server, checker, server.tenant(ca=lab.pki.ca)) as c:
        _feeds(server, lab)
        release(c, lab, YOCTO, "1", _yocto_sbom_with_cve_status())
        y, y_auth = device(c, YOCTO)
        report(c, y, y_auth, "1")
        assert c.get("/api/v1/vex").json() == []
        scan(c)
        sbom = {(v["cve"], v["component"]): v for v in c.get("/api/v1/vex", params={"compatible": YOCTO}).json()}
        assert {v["origin"] for v in sbom.values()} == {"sbom"} and {v["actor"] for v in sbom.values()} == {"sbom"}
        ignored = sbom[("CVE-2024-3094", "busybox")]
        assert (ignored["status"], ignored["justification"]) == ("not_affected", "code_not_present")
        assert ignored["impact_statement"] == "Yocto CVE_STATUS cpe-incorrect: xz, not busybox"
        assert ignored["component_version"]  # the version the SBOM lists: carried forward while it is unchanged
        nft = next(v for (cve, _), v in sbom.items() if cve == "CVE-2024-1086")
        assert (nft["status"], nft["justification"]) == ("not_affected", "code_not_reachable")
        assert any(v["status"] == "fixed" for v in sbom.values())  # busybox's "CVEs fixed" (resolved)
        [event] = c.get("/api/v1/audit", params={"action": "vex.sbom_import"}).json()
        assert event["actor"] == "sbom" and event["details"]["added"] == len(sbom)
        kernel = next(f for f in _shown(c, "CVE-2024-1086")["findings"])
        assert kernel["status"] == "not_affected" and kernel["vex_id"] == nft["id"]

        # a person decides otherwise for the same component and version: that wins, and a rescan never undoes it
        body = {"compatible": YOCTO, "cve": "CVE-2024-1086", "component": nft["component"], "status": "affected",
                "action_statement": "nf_tables is built since release 1; update"}  # fmt: skip
        r = c.put("/api/v1/vex", json=body)
        assert r.status_code == 200 and r.json()["id"] == nft["id"], r.text  # the same key: now the person's
        assert (r.json()["origin"], r.json()["component_version"]) == ("user", nft["component_version"])
        scan(c)
        after = next(v for v in c.get("/api/v1/vex", params={"cve": "CVE-2024-1086"}).json())
        assert (after["origin"], after["status"], after["actor"]) == ("user", "affected", r.json()["actor"])
        assert _shown(c, "CVE-2024-1086")["findings"][0]["status"] == "affected"
        assert len(c.get("/api/v1/audit", params={"action": "vex.sbom_import"}).json()) == 1  # nothing new to say

        # and a person's product-wide statement wins over the SBOM's component statement too
        r = c.put("/api/v1/vex", json={"compatible": YOCTO, "cve": "CVE-2024-3094", "status": "under_investigation"})
        assert r.status_code == 201, r.text
        assert {f["status"] for f in _shown(c, "CVE-2024-3094")["findings"]} == {"under_investigation"}
        doc = c.get("/api/v1/vex/export", params={"compatible": YOCTO, "format": "cyclonedx"}).json()
        assert {v["id"] for v in doc["vulnerabilities"]} >= {"CVE-2024-3094", "CVE-2024-1086"}
