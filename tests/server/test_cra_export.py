"""The technical documentation export (CRA Annex VII) on a live server (SQLite and PostgreSQL): one archive holds the
product, each release's SBOMs as uploaded and as exported, its findings, the scan history, VEX, the Article 14 cases
with their submissions, and the update and signing process, listed with their sha256 in manifest.json; the same data
gives the same bytes, and a changed VEX statement changes only the VEX members; an unknown product is a 404 saying
what to do, a viewer a 403."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.server.conftest import LiveServer
from tests.server.test_schemas import Checker
from tests.server.vuln_fixtures import CDX_YOCTO, YOCTO, Lab, device, import_feed, make_lab, release, report, scan

CVE = "CVE-2024-36971"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("cra-export"))


@pytest.fixture(scope="module")
def checker(server: LiveServer) -> Checker:
    return Checker(httpx.get(server.url + "/openapi.json").json())


@contextmanager
def checked(server: LiveServer, checker: Checker, token: str) -> Iterator[httpx.Client]:
    with server.client(token) as c:
        c.event_hooks["response"].append(checker)
        yield c


def _export(c: httpx.Client) -> bytes:
    r = c.get("/api/v1/cra/export", params={"product": YOCTO})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/gzip" and "techdoc.tar.gz" in r.headers["content-disposition"]
    return r.content


def _files(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = {}
        for info in tar.getmembers():
            f = tar.extractfile(info)
            assert f is not None
            out[info.name] = f.read()
        return out


def _hashes(data: bytes) -> dict[str, str]:
    return {m["path"]: m["sha256"] for m in json.loads(_files(data)["manifest.json"])["members"]}


def test_the_archive_holds_the_technical_documentation_and_is_deterministic(
    server: LiveServer, lab: Lab, checker: Checker
) -> None:
    token = server.tenant(ca=lab.pki.ca)
    with checked(server, checker, token) as c:
        with server.client(server.admin) as a:
            import_feed(a, "cve-records", lab.feeds["cve-records"])
            import_feed(a, "cisa-kev", lab.feeds["cisa-kev"])
        r = c.put(f"/api/v1/products/{YOCTO}", json={"name": "Gateway 3", "manufacturer": "Acme", "support_end": "2031-12-31"})
        assert r.status_code == 201, r.text
        rid = release(c, lab, YOCTO, "1", CDX_YOCTO.read_bytes())
        name, auth = device(c, YOCTO)
        report(c, name, auth, "1")
        refused = {"event": "signature_refused", "message": "signature verification failed", "version": "1"}
        ev = {"seq": 1000, "kind": "security", "phase": None, "release_id": rid, "details": refused}
        assert c.post("/device/v1/reports", json={"events": [ev]}, headers=auth).status_code == 200
        run = scan(c)
        vex = {"compatible": YOCTO, "cve": CVE, "status": "under_investigation", "impact_statement": "looking"}
        assert c.put("/api/v1/vex", json=vex).status_code == 201
        body = {"kind": "incident", "title": "Update server breached", "compatible": YOCTO}
        case = c.post("/api/v1/cra/cases", json=body).json()
        assert c.post(f"/api/v1/cra/cases/{case['id']}/confirm", json={}).status_code == 200
        r = c.post(f"/api/v1/cra/cases/{case['id']}/submissions", json={"submission": "early_warning", "reference": "SRP-7"})
        assert r.status_code == 201, r.text
        r = c.post("/api/v1/rollouts", json={"name": "v1", "release_id": rid, "target": {"compatible": YOCTO}})
        assert r.status_code == 201, r.text

        cases = sorted(x["id"] for x in c.get("/api/v1/cra/cases").json())
        assert len(cases) == 2  # the one by hand, and the one the scan's KEV exposure opened
        first = _export(c)
        assert _export(c) == first  # the same data, byte for byte
        files = _files(first)
        base = f"releases/1-{rid}"
        assert list(files) == [
            "product.json",
            f"{base}/release.json",
            f"{base}/sbom/uploaded-cyclonedx.json",
            f"{base}/sbom/export.cdx.json",
            f"{base}/sbom/export.spdx.json",
            f"{base}/findings.json",
            "findings-history.json",
            "vex/openvex.json",
            "vex/cyclonedx-vex.json",
            *(f"cases/case-{i}.json" for i in cases),
            "process/update-and-signing.json",
            "process/update-and-signing.md",
            "security/device-security-log.json",
            "manifest.json",
        ]
        manifest = json.loads(files["manifest.json"])
        assert manifest["format"] == "bulkhead-cra-techdoc/1" and manifest["compatible"] == YOCTO
        for m in manifest["members"]:
            assert hashlib.sha256(files[m["path"]]).hexdigest() == m["sha256"] and m["size"] == len(files[m["path"]])
        assert len(manifest["members"]) == len(files) - 1

        product = json.loads(files["product.json"])
        assert (product["name"], product["support_end"], product["releases"][0]["id"]) == ("Gateway 3", "2031-12-31", rid)
        assert files[f"{base}/sbom/uploaded-cyclonedx.json"] == CDX_YOCTO.read_bytes()  # as uploaded
        assert json.loads(files[f"{base}/sbom/export.cdx.json"])["specVersion"] == "1.6"
        assert json.loads(files[f"{base}/sbom/export.spdx.json"])["spdxVersion"] == "SPDX-2.3"
        findings = json.loads(files[f"{base}/findings.json"])
        assert any(f["cve"] == CVE and f["kev"] for f in findings)
        history = json.loads(files["findings-history.json"])
        assert run["id"] in [h["id"] for h in history] and all("feeds" in h for h in history)
        assert "cve-records" in next(h for h in history if h["id"] == run["id"])["feeds"]
        openvex = json.loads(files["vex/openvex.json"])
        statements = [(s["vulnerability"]["name"], s["status"]) for s in openvex["statements"]]
        assert (CVE, "under_investigation") in statements and ("CVE-2024-1086", "not_affected") in statements  # + the SBOM's
        shown = json.loads(files[f"cases/case-{case['id']}.json"])
        [submitted] = [e for e in shown["log"] if e["kind"] == "submission"]
        assert submitted["reference"] == "SRP-7" and submitted["payload"]
        process = json.loads(files["process/update-and-signing.json"])
        assert process["keyring"] and process["keyring"][0]["sha256_fingerprint"]
        assert [(r["name"], r["release_version"]) for r in process["rollouts"]] == [("v1", "1")]
        assert process["keyring"][0]["subject"] in files["process/update-and-signing.md"].decode()

        log = json.loads(files["security/device-security-log.json"])
        assert log["counts"] == {"signature_refused": 1}
        [logged] = log["events"]
        assert (logged["device"], logged["kind"], logged["version"]) == (name, "signature_refused", "1")
        assert logged["release_id"] == rid and logged["message"] == "signature verification failed"

        # one VEX statement changes: the archive changes, and only the VEX members' hashes do
        vex["impact_statement"] = "the IPv6 route cache is not built"
        assert c.put("/api/v1/vex", json=vex).status_code == 200
        second = _export(c)
        assert second != first
        before, after = _hashes(first), _hashes(second)
        assert list(before) == list(after)
        assert [p for p in before if before[p] != after[p]] == ["vex/openvex.json", "vex/cyclonedx-vex.json"]


def test_unknown_product_missing_parameter_and_viewer_are_refused(server: LiveServer, checker: Checker) -> None:
    token = server.tenant()
    with checked(server, checker, token) as c:
        r = c.get("/api/v1/cra/export", params={"product": "no-such-board"})
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert "bulkhead cra product set no-such-board" in r.json()["message"]
        r = c.get("/api/v1/cra/export")
        assert r.status_code in (400, 422) and "error" in r.json()
        assert c.put("/api/v1/products/gw", json={"name": "G", "manufacturer": "A"}).status_code == 201
        viewer = c.post("/api/v1/tokens", json={"name": "ro", "user": "vera", "role": "viewer"}).json()["token"]
    with checked(server, checker, viewer) as v:
        r = v.get("/api/v1/cra/export", params={"product": "gw"})
        assert r.status_code == 403 and "operator" in r.json()["message"]
