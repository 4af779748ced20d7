"""Vulnerability monitoring on a live server: releases' SBOMs and devices' inventories matched against imported feeds
(derived from the shared testdata, see vuln_fixtures.py), device and fleet exposure, the fix, VEX, KEV events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import LiveServer
from tests.server.test_schemas import Checker
from tests.server.vuln_fixtures import (
    CDX_YOCTO,
    DEBIAN,
    NEW_SSL,
    OLD_SSL,
    YOCTO,
    Lab,
    cves,
    debian_sbom,
    device,
    import_feed,
    make_lab,
    release,
    report,
    scan,
)

POKY = {"ID": "poky", "VERSION_ID": "5.0"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("vulns"))


@pytest.fixture(scope="module")
def checker(server: LiveServer) -> Checker:
    return Checker(httpx.get(server.url + "/openapi.json").json())


@contextmanager
def checked(server: LiveServer, checker: Checker, token: str) -> Iterator[httpx.Client]:
    """A client whose every JSON answer is validated against the server's OpenAPI document."""
    with server.client(token) as c:
        c.event_hooks["response"].append(checker)
        yield c


def _feeds(server: LiveServer, lab: Lab, kev: str = "cisa-kev") -> None:
    """The feeds are the server's, shared by every tenant: the administrator imports them."""
    with server.client(server.admin) as a:
        import_feed(a, "cve-records", lab.feeds["cve-records"])
        import_feed(a, "debian-tracker", lab.feeds["debian-tracker"])
        import_feed(a, "cisa-kev", lab.feeds[kev])


def test_debian_release_findings_device_exposure_and_the_fix(server: LiveServer, lab: Lab, checker: Checker) -> None:
    with checked(server, checker, server.tenant(ca=lab.pki.ca)) as c:
        _feeds(server, lab)
        feeds = {f["name"]: f for f in c.get("/api/v1/vulnerability-feeds").json()}
        assert feeds["cve-records"]["records"] == 32 and feeds["debian-tracker"]["has_data"]
        assert feeds["cve-records"]["import_only"] and "CVE" in feeds["cve-records"]["attribution"]
        r1 = release(c, lab, DEBIAN, "1", debian_sbom(OLD_SSL))
        r2 = release(c, lab, DEBIAN, "2", debian_sbom(NEW_SSL))
        a, a_auth = device(c, DEBIAN, "line-a")
        b, b_auth = device(c, DEBIAN, "line-b")
        n, n_auth = device(c, DEBIAN, "line-b")
        report(c, a, a_auth, "1")  # no package list: the release's SBOM is what it runs
        report(c, b, b_auth, "1", {"libssl3": OLD_SSL, "rauc": "1.8-2"})
        report(c, n, n_auth, "2")

        run = scan(c)
        assert run["kind"] == "full" and run["counts"]["releases"] == 2 and run["counts"]["devices_mapped"] == 3
        assert run["feeds"]["debian-tracker"]["sha256"] and run["feeds"]["cve-records"]["records"] == 32

        old = cves(c, release=r1)["CVE-2024-5535"]
        assert old["status"] == "affected" and old["fixed_versions"] == ["3.0.14-1~deb12u1"]
        assert old["components"] == [f"libssl3 {OLD_SSL}"] and old["devices"] == 0  # a release scope counts no devices
        assert cves(c, release=r2)["CVE-2024-5535"]["status"] == "fixed"

        shown = c.get("/api/v1/vulnerabilities/CVE-2024-5535").json()
        assert shown["exposure"] == {
            "devices": 2, "groups": {"line-a": 1, "line-b": 1}, "versions": {"1": 2}, "countries": {"unknown": 2}
        }  # fmt: skip
        assert shown["fix"]["versions"] == ["3.0.14-1~deb12u1"]
        assert shown["fix"]["releases"] == [{"compatible": DEBIAN, "release_id": r2, "version": "2"}]
        by_release = {f["release"]: f for f in shown["findings"]}
        assert by_release["1"]["source"] == "debian-tracker" and "source openssl" in by_release["1"]["reason"]
        assert by_release["2"]["status"] == "fixed"
        assert shown["description"] and "OpenSSL" in shown["description"]

        first = c.get("/api/v1/vulnerabilities/CVE-2024-5535/devices", params={"limit": 1})
        rest = c.get("/api/v1/vulnerabilities/CVE-2024-5535/devices", params={"cursor": first.headers["x-next-cursor"]})
        assert sorted(d["name"] for d in first.json() + rest.json()) == sorted([a, b])
        assert cves(c, group="line-b")["CVE-2024-5535"]["devices"] == 1

        # b installs the fixed libssl3: once a scan has seen its new inventory, it is no longer exposed
        report(c, b, b_auth, "1", {"libssl3": NEW_SSL, "rauc": "1.8-2"})
        assert c.get("/api/v1/vulnerabilities/CVE-2024-5535").json()["exposure"]["devices"] == 2  # not scanned yet
        run = scan(c, "devices")
        assert run["counts"] == run["counts"] | {"releases": 0, "profiles": 1, "devices_mapped": 1}
        assert cves(c, device=b)["CVE-2024-5535"]["status"] == "fixed"
        assert cves(c, device=a)["CVE-2024-5535"]["status"] == "affected"
        exposure = c.get("/api/v1/vulnerabilities/CVE-2024-5535").json()["exposure"]
        assert exposure == {"devices": 1, "groups": {"line-a": 1}, "versions": {"1": 1}, "countries": {"unknown": 1}}
        assert [d["name"] for d in c.get("/api/v1/vulnerabilities/CVE-2024-5535/devices").json()] == [a]
        assert "CVE-2024-5535" not in cves(c, group="line-b", status="affected")

        # group membership is counted from the mapping the scans keep: a device put in a group counts there after one
        assert c.put(f"/api/v1/groups/line-b/devices/{a}").status_code in (200, 204)
        assert scan(c, "devices")["counts"]["devices_mapped"] == 1
        exposure = c.get("/api/v1/vulnerabilities/CVE-2024-5535").json()["exposure"]
        assert exposure["groups"] == {"line-a": 1, "line-b": 1} and exposure["devices"] == 1
        assert cves(c, group="line-b")["CVE-2024-5535"]["devices"] == 1

        # deleting the fixing release takes its findings with it (the devices' findings stay until the next scan)
        assert c.delete(f"/api/v1/releases/{r2}").status_code == 204
        shown = c.get("/api/v1/vulnerabilities/CVE-2024-5535").json()
        assert {f["release"] for f in shown["findings"]} == {"1"} and shown["fix"]["releases"][0]["release_id"] is None
        assert shown["exposure"]["devices"] == 1 and cves(c, device=n)["CVE-2024-5535"]["status"] == "fixed"


def test_yocto_sbom_findings_kev_and_vex_not_affected_keeps_the_record(server: LiveServer, lab: Lab, checker: Checker) -> None:
    admin = server.tenant(ca=lab.pki.ca)
    with checked(server, checker, admin) as c:
        _feeds(server, lab)
        viewer = c.post("/api/v1/tokens", json={"name": "ro", "user": "vera", "role": "viewer"}).json()["token"]
        rid = release(c, lab, YOCTO, "1", CDX_YOCTO.read_bytes())
        y, y_auth = device(c, YOCTO, "field")
        z, z_auth = device(c, YOCTO, "field")
        report(c, y, y_auth, "1")
        report(c, z, z_auth, "1", {"libcrypto3": "3.2.1-r0", "busybox": "1.36.1-r0"}, fmt="opkg", os_release=POKY)
        scan(c)

        found = cves(c, release=rid)
        assert found["CVE-2024-36971"]["status"] == "affected" and found["CVE-2024-36971"]["kev"] is True
        assert found["CVE-2024-36971"]["kev_date"] and found["CVE-2024-36971"]["severity"] in ("medium", "high", "critical")
        assert found["CVE-2024-1086"]["status"] == "not_affected"  # the SBOM's own VEX (nf_tables is not built)
        assert found["CVE-2024-5535"]["status"] == "fixed"  # openssl 3.2.3
        assert set(cves(c, release=rid, kev=True)) == {"CVE-2024-36971", "CVE-2024-1086"}
        critical = cves(c, release=rid, min_severity="critical")
        assert critical and set(critical) < set(found) and {r["severity"] for r in critical.values()} == {"critical"}
        assert cves(c, device=z)["CVE-2024-5535"]["status"] == "affected"  # the device reports libcrypto3 3.2.1
        assert cves(c, device=y)["CVE-2024-5535"]["status"] == "fixed"
        assert c.get("/api/v1/vulnerabilities/CVE-2024-36971").json()["exposure"]["devices"] == 2
        everything, cursor, pages = [], None, 0  # the CVE list pages by CVE id like every list
        while True:
            r = c.get("/api/v1/vulnerabilities", params={"limit": 1, **({"cursor": cursor} if cursor else {})})
            everything += [row["cve"] for row in r.json()]
            pages += 1
            if not (cursor := r.headers.get("x-next-cursor")):
                break
        assert everything == sorted(cves(c)) and pages == len(everything) > 1

        with checked(server, checker, viewer) as v:  # viewers read, but do not triage or scan
            assert v.get("/api/v1/vulnerabilities/CVE-2024-36971").status_code == 200
            body = {"compatible": YOCTO, "cve": "CVE-2024-36971", "status": "not_affected", "justification": "code_not_reachable"}
            r = v.put("/api/v1/vex", json=body)
            assert r.status_code == 403 and "operator" in r.json()["message"]
            assert v.post("/api/v1/vulnerabilities/scan", json={}).status_code == 403

        body = {
            "compatible": YOCTO,
            "cve": "CVE-2024-36971",
            "status": "not_affected",
            "justification": "code_not_reachable",
            "impact_statement": "the IPv6 route cache is not used by this product",
        }
        r = c.put("/api/v1/vex", json=body)
        assert r.status_code == 201, r.text
        vex_id = r.json()["id"]
        assert c.put("/api/v1/vex", json=body).status_code == 200  # the same statement again replaces it

        shown = c.get("/api/v1/vulnerabilities/CVE-2024-36971").json()
        assert shown["exposure"]["devices"] == 0
        kernel = next(f for f in shown["findings"] if f["release_id"] == rid)
        assert (kernel["status"], kernel["matcher_status"], kernel["vex_id"]) == ("not_affected", "affected", vex_id)
        assert shown["vex"][0]["justification"] == "code_not_reachable" and shown["vex"][0]["actor"].startswith("user:")
        assert cves(c, release=rid)["CVE-2024-36971"]["status"] == "not_affected"  # still listed, with its status
        scan(c)  # a rescan keeps the decision
        assert c.get("/api/v1/vulnerabilities/CVE-2024-36971").json()["exposure"]["devices"] == 0

        doc = c.get("/api/v1/vex/export", params={"compatible": YOCTO}).json()
        assert doc["@context"] == "https://openvex.dev/ns/v0.2.0"
        # the SBOM's own statements are VEX records too (test_vex_cyclonedx.py); here the person's
        doc["statements"] = [x for x in doc["statements"] if x["vulnerability"]["name"] == "CVE-2024-36971"]
        [st] = doc["statements"]
        assert st["vulnerability"] == {"name": "CVE-2024-36971"} and st["status"] == "not_affected"
        assert st["justification"] == "vulnerable_code_not_in_execute_path" and st["impact_statement"]
        audit = c.get("/api/v1/audit", params={"action": "vex.set"}).json()
        assert [e["action"] for e in audit] == ["vex.set", "vex.set"] and audit[0]["subject"] == f"{YOCTO} CVE-2024-36971"

        assert c.delete(f"/api/v1/vex/{vex_id}").status_code == 204
        assert c.get("/api/v1/vulnerabilities/CVE-2024-36971").json()["exposure"]["devices"] == 2

        # the exported document imports back (the product from its purl): the decision is there again
        r = c.post("/api/v1/vex/import", json=doc)
        assert r.status_code == 200, r.text
        [back] = r.json()
        assert (back["compatible"], back["cve"], back["status"]) == (YOCTO, "CVE-2024-36971", "not_affected")
        assert back["justification"] == "vulnerable_code_not_in_execute_path"
        assert c.get("/api/v1/vulnerabilities/CVE-2024-36971").json()["exposure"]["devices"] == 0
        assert c.get("/api/v1/audit", params={"action": "vex.import"}).json()[0]["details"]["statements"] == 1


def test_a_kev_update_marks_an_affecting_cve_exploited_and_records_an_event(
    server: LiveServer, lab: Lab, checker: Checker
) -> None:
    with checked(server, checker, server.tenant(ca=lab.pki.ca)) as c:
        _feeds(server, lab, kev="kev-without-36971")
        rid = release(c, lab, YOCTO, "1", CDX_YOCTO.read_bytes())
        y, y_auth = device(c, YOCTO)
        report(c, y, y_auth, "1")
        scan(c)
        assert cves(c, release=rid)["CVE-2024-36971"]["kev"] is False
        assert c.get("/api/v1/audit", params={"action": "vuln.kev_exploited"}).json() == []

        with server.client(server.admin) as a:
            import_feed(a, "cisa-kev", lab.feeds["cisa-kev"])
        assert cves(c, release=rid)["CVE-2024-36971"]["kev"] is True
        [event] = c.get("/api/v1/audit", params={"action": "vuln.kev_exploited"}).json()
        assert event["subject"] == "CVE-2024-36971" and event["details"]["devices"] == 1
        assert event["details"]["releases"] == ["1"] and event["details"]["kev_date_added"] == "2024-08-07"
        with server.client(server.admin) as a:
            import_feed(a, "cisa-kev", lab.feeds["cisa-kev"])  # told once
        assert len(c.get("/api/v1/audit", params={"action": "vuln.kev_exploited"}).json()) == 1
        kinds = [r["kind"] for r in c.get("/api/v1/vulnerabilities/scans").json()]
        assert kinds == ["kev", "full"]  # the catalogue that changed something; the second import changed nothing


def test_bad_input_is_refused_with_a_clear_message_and_changes_nothing(
    server: LiveServer, lab: Lab, checker: Checker, tmp_path: Path
) -> None:
    with checked(server, checker, server.tenant(ca=lab.pki.ca)) as c:
        _feeds(server, lab)
        before = {f["name"]: f for f in c.get("/api/v1/vulnerability-feeds").json()}
        junk = tmp_path / "maintenance.html"
        junk.write_text("<html>down for maintenance</html>")
        # A tenant's admin cannot change what every tenant reads.
        r = c.post("/api/v1/vulnerability-feeds/debian-tracker/import", content=junk.read_bytes())
        assert r.status_code == 403 and "administrator token" in r.json()["message"], r.text
        r = c.post("/api/v1/vulnerability-feeds/sync")
        assert r.status_code == 403 and "administrator token" in r.json()["message"], r.text
        a = server.client(server.admin)
        r = a.post("/api/v1/vulnerability-feeds/debian-tracker/import", content=junk.read_bytes())
        assert r.status_code == 422 and "not a valid debian-tracker feed" in r.json()["message"], r.text
        r = a.post("/api/v1/vulnerability-feeds/cve-records/import", content=b'[{"dataType": "CVE_RECORD"}]')
        assert r.status_code == 422 and "item 0" in r.json()["message"]
        after = {f["name"]: f for f in c.get("/api/v1/vulnerability-feeds").json()}
        for name in ("debian-tracker", "cve-records"):
            assert (
                after[name]["records"] == before[name]["records"] and after[name]["last_changed"] == before[name]["last_changed"]
            )
            assert "last good copy is kept" in after[name]["last_error"]
        r = a.post("/api/v1/vulnerability-feeds/osv-magic/import", content=b"{}")
        assert r.status_code == 404 and "cve-records" in r.json()["message"]
        r = a.post("/api/v1/vulnerability-feeds/cisa-kev/import", content=b"")
        assert r.status_code == 400 and "send the feed file" in r.json()["message"]
        a.close()

        for body, status, message in (
            ({"compatible": YOCTO, "cve": "CVE-2024-3094", "status": "not_affected"}, 400, "needs a justification"),
            ({"compatible": YOCTO, "cve": "CVE-2024-3094", "status": "affected", "justification": "code_not_present"}, 400,
             "only goes with"),
            ({"compatible": YOCTO, "cve": "CVE-2024-3094", "status": "not_affected", "justification": "trust me"}, 400,
             "unknown justification"),
            ({"compatible": YOCTO, "cve": "CVE-2024-3094", "status": "wontfix"}, 422, "status"),
            ({"compatible": YOCTO, "cve": "CVE 2024/3094", "status": "affected"}, 422, "cve"),
            ({"compatible": "no-such-product", "cve": "CVE-2024-3094", "status": "affected"}, 404,
             "no release or device of compatible 'no-such-product'"),
        ):  # fmt: skip
            r = c.put("/api/v1/vex", json=body)
            assert r.status_code == status and message in r.json()["message"], r.text
        openvex = {
            "@context": "https://openvex.dev/ns/v0.2.0",
            "statements": [
                {"vulnerability": {"name": "CVE-2024-3094"}, "products": [{"@id": "pkg:generic/x"}], "status": "fixed"},
                {"vulnerability": {"name": "CVE-2024-6387"}, "products": [{"@id": "pkg:generic/x"}], "status": "not_affected"},
            ],
        }
        r = c.post("/api/v1/vex/import", json=openvex)
        assert r.status_code == 400 and "statements[1] (CVE-2024-6387)" in r.json()["message"], r.text
        r = c.post("/api/v1/vex/import", json={"statements": []})
        assert r.status_code == 400 and "neither an OpenVEX document" in r.json()["message"]
        assert c.get("/api/v1/vex").json() == []
        assert c.get("/api/v1/audit", params={"action": "vex."}).json() == []

        r = c.get("/api/v1/vulnerabilities", params={"min_severity": "dire"})
        assert r.status_code == 400 and "min_severity" in r.json()["message"]
        assert c.get("/api/v1/vulnerabilities", params={"release": 999999}).status_code == 404
        r = c.get("/api/v1/vulnerabilities", params={"device": "nobody"})
        assert r.status_code == 404 and "device 'nobody'" in r.json()["message"]
        r = c.get("/api/v1/vulnerabilities/CVE-2099-0001")
        assert r.status_code == 404 and "bulkhead vuln scan" in r.json()["message"]
        assert c.post("/api/v1/vulnerabilities/scan", json={"kind": "partial"}).status_code == 422
        assert c.get("/api/v1/vulnerabilities/scans").json() == []
