"""The web UI's apps, groups, tokens, keyring, vulnerability and CRA pages over HTTP (real server, both databases):
each write goes through the service (role check, audit as the web user) and needs the CSRF token; viewers get no
write controls and a forged write changes nothing; text from devices and users is escaped."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bulkhead.lab.pki import make_pki
from tests.conftest import DEV_CA, SHARED
from tests.delta.conftest import ext4, full_bundle
from tests.server.conftest import LiveServer
from tests.server.ui_fixtures import Tenant, csrf, device, login, tenant, unique
from tests.server.vuln_fixtures import DEBIAN, OLD_SSL, TRACKER, debian_sbom, import_feed, report, scan
from tests.server.vuln_fixtures import device as vuln_device

EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _actors(api: httpx.Client, prefix: str) -> set[tuple[str, str]]:
    events = api.get("/api/v1/audit", params={"action": prefix}).json()
    return {(e["action"], e["actor"]) for e in events}


def test_apps_and_groups_pages_with_the_operators_writes(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    t.user("watcher", "viewer")
    app = {"name": "web", "version": "1", "containers": [{"name": "m", "image": "web:1"}]}
    assert t.api.post("/api/v1/apps", json=app).status_code == 201
    d = device(t, unique("dev"), "lab")
    o = login(server, t, "ops")
    assert "web:1" in o.get("/ui/apps").text
    groups = o.get("/ui/groups").text
    assert re.search(r'href="/ui/groups/lab">lab</a></td><td class="num">1</td>', groups), groups
    token = csrf(o, "/ui/groups")
    assert o.post("/ui/groups", data={"csrf": token, "name": "line 2"}).status_code == 400  # an invalid name
    r = o.post("/ui/groups", data={"csrf": token, "name": "line-2"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/groups/line-2"
    writes = [
        ("app", {"app": "web", "version": "1"}),
        ("window", {"cron": "0 2 * * *", "duration_minutes": "90", "timezone": "Europe/Berlin"}),
        ("add-device", {"device": d.name}),
    ]
    for action, fields in writes:
        r = o.post(f"/ui/groups/line-2/{action}", data={"csrf": token, **fields})
        assert r.status_code == 303, (action, r.text)
    shown = t.api.get("/api/v1/groups/line-2").json()
    assert shown["apps"] == {"web": "1"} and shown["window"]["duration_minutes"] == 90 and shown["device_names"] == [d.name]
    assert 'href="/ui/groups/line-2">line-2</a>' in o.get("/ui/apps").text  # the app's version, desired by the group
    page = o.get("/ui/groups/line-2").text
    assert "0 2 * * *" in page and "Europe/Berlin" in page and d.name in page and "web 1" in page
    bad = o.post("/ui/groups/line-2/window", data={"csrf": token, "cron": "0 2 * * *", "duration_minutes": "soon"})
    assert bad.status_code == 400 and "minutes" in bad.text
    refused = o.post("/ui/groups/line-2/delete", data={"csrf": token})
    assert refused.status_code == 409 and "still has devices" in refused.text
    assert o.post("/ui/groups/line-2/remove-device", data={"csrf": token, "device": d.name}).status_code == 303
    assert o.post("/ui/groups/line-2/window", data={"csrf": token, "cron": ""}).status_code == 303
    assert t.api.get("/api/v1/groups/line-2").json()["window"] is None
    assert o.post("/ui/groups/line-2/delete", data={"csrf": token}).status_code == 303
    assert t.api.get("/api/v1/groups/line-2").status_code == 404
    web = "user:ops (web)"
    assert {("group.create", web), ("group.window", web), ("group.desired", web), ("group.delete", web)} <= _actors(
        t.api, "group."
    )

    v = login(server, t, "watcher")
    for page in ["/ui/groups", "/ui/groups/lab", "/ui/apps"]:
        text = v.get(page).text
        assert 'method="post" action="/ui/groups' not in text, page
    vt = csrf(v, "/ui/account")
    assert v.post("/ui/groups", data={"csrf": vt, "name": "sneaky"}).status_code == 403
    assert v.post("/ui/groups/lab/window", data={"csrf": vt, "cron": ""}).status_code == 403
    assert o.post("/ui/groups", data={"name": "forged"}).status_code == 403  # no CSRF token
    names = {g["name"] for g in t.api.get("/api/v1/groups").json()}
    assert "sneaky" not in names and "forged" not in names


def _fingerprint(pem: bytes) -> str:
    digest = hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def test_admin_tokens_keyring_and_ddi_settings(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    b = login(server, t, "admin")
    token = csrf(b, "/ui/tokens")
    r = b.post(
        "/ui/tokens/api", data={"csrf": token, "name": "ci", "user": "builder", "role": "operator", "expires_in_days": "30"}
    )
    assert r.status_code == 201, r.text
    secret = re.search(r'id="new-secret">([^<]+)<', r.text)
    assert secret, "the secret is shown once"
    with server.client(secret.group(1)) as ci:
        assert ci.get("/api/v1/devices").status_code == 200
        assert secret.group(1) not in b.get("/ui/tokens").text  # never again
        ci_id = next(x["id"] for x in t.api.get("/api/v1/tokens").json() if x["name"] == "ci")
        assert b.post(f"/ui/tokens/api/{ci_id}/revoke", data={"csrf": token}).status_code == 303
        deadline = time.monotonic() + 10  # the servers' token caches hold an answer for half a second
        while ci.get("/api/v1/devices").status_code != 401:
            assert time.monotonic() < deadline, "the revoked token still works"
            time.sleep(0.2)
    r = b.post(
        "/ui/tokens/bootstrap", data={"csrf": token, "name": "line", "group": "line", "max_uses": "2", "requires_approval": "on"}
    )
    assert r.status_code == 201
    boot = re.search(r'id="new-secret">([^<]+)<', r.text)
    assert boot
    enroll = {"bootstrap_token": boot.group(1), "name": unique("d"), "compatible": "Test Config"}
    assert httpx.post(server.url + "/device/v1/enroll", json=enroll).status_code == 201
    assert b.post("/ui/tokens/bootstrap", data={"csrf": token, "name": "x", "max_uses": "-1"}).status_code == 400
    web = "user:admin (web)"
    assert {("token.create", web), ("token.revoke", web)} <= _actors(t.api, "token.")

    keyring = b.get("/ui/keyring").text
    assert _fingerprint(DEV_CA.read_bytes()) in keyring and "Gateway token" in keyring
    r = b.post("/ui/ddi", data={"csrf": token, "auto_register": "on", "default_compatible": "Test Config", "rotate": "on"})
    assert r.status_code == 200 and re.search(r'id="new-secret">bhg_', r.text)
    assert "bhg_" not in b.get("/ui/keyring").text and ("ddi.configure", web) in _actors(t.api, "ddi.")

    o = login(server, t, "ops")
    assert o.get("/ui/tokens").status_code == 403
    page = o.get("/ui/keyring")
    assert page.status_code == 200 and "/ui/ddi" not in page.text and "/ui/tokens" not in page.text
    ot = csrf(o)
    assert o.post("/ui/tokens/api", data={"csrf": ot, "name": "sneaky", "role": "admin"}).status_code == 403
    assert o.post("/ui/ddi", data={"csrf": ot, "rotate": "on"}).status_code == 403
    assert b.post("/ui/tokens/api", data={"name": "forged", "role": "admin"}).status_code == 403  # no CSRF token
    assert {"sneaky", "forged"}.isdisjoint(x["name"] for x in t.api.get("/api/v1/tokens").json())


def test_cra_cases_with_time_left_notes_and_escaped_text(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    t.user("watcher", "viewer")
    r = t.api.post("/api/v1/cra/cases", json={"kind": "vulnerability", "title": f"case {EVIL}", "cves": ["CVE-2024-3094"]})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    o = login(server, t, "ops")
    listing = o.get("/ui/cra/cases").text
    assert ESCAPED in listing and "<script>alert" not in listing and "confirm awareness" in listing
    token = csrf(o, f"/ui/cra/cases/{cid}")
    assert o.post(f"/ui/cra/cases/{cid}/confirm", data={"csrf": token, "awareness_at": "yesterday"}).status_code == 400
    assert o.post(f"/ui/cra/cases/{cid}/confirm", data={"csrf": token, "awareness_at": ""}).status_code == 303
    assert o.post(f"/ui/cra/cases/{cid}/note", data={"csrf": token, "text": f"note {EVIL}"}).status_code == 303
    page = o.get(f"/ui/cra/cases/{cid}").text
    assert re.search(r"Early warning \(24 h\)</td><td>[^<]+</td><td class=\"\">(23|24) h left", page), page
    assert page.count(ESCAPED) >= 2 and "<script>alert" not in page
    web = "user:ops (web)"
    assert {("cra.case.confirm", web), ("cra.case.note", web)} <= _actors(t.api, "cra.case.")
    summary = o.get("/ui/overview/security").text
    assert f'href="/ui/cra/cases/{cid}"' in summary and "h left" in summary and "<html" not in summary

    v = login(server, t, "watcher")
    text = v.get(f"/ui/cra/cases/{cid}").text
    assert "/note" not in text and "/confirm" not in text
    r = v.post(f"/ui/cra/cases/{cid}/note", data={"csrf": csrf(v), "text": "viewer note"})
    assert r.status_code == 403
    assert "viewer note" not in o.get(f"/ui/cra/cases/{cid}").text
    adv = v.get("/ui/cra/advisories")
    assert adv.status_code == 200 and f'/{t.name}/advisories/"' in adv.text  # the public CSAF pages


def test_cra_case_submissions_and_dismissal_from_the_case_page(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    t.user("watcher", "viewer")
    cid = t.api.post("/api/v1/cra/cases", json={"kind": "vulnerability", "title": "c", "cves": ["CVE-2024-3094"]}).json()["id"]
    o, v = login(server, t, "ops"), login(server, t, "watcher")
    token = csrf(o, f"/ui/cra/cases/{cid}")
    assert "Record submission" not in o.get(f"/ui/cra/cases/{cid}").text, "nothing to submit before awareness is confirmed"
    assert o.post(f"/ui/cra/cases/{cid}/confirm", data={"csrf": token}).status_code == 303
    page = o.get(f"/ui/cra/cases/{cid}").text
    assert 'value="early_warning"' in page and 'value="final_report"' not in page, "only the submission due next"
    forged = v.post(f"/ui/cra/cases/{cid}/submit", data={"csrf": csrf(v), "submission": "early_warning", "reference": "x"})
    assert forged.status_code == 403
    empty = o.post(f"/ui/cra/cases/{cid}/submit", data={"csrf": token, "submission": "early_warning", "reference": ""})
    assert empty.status_code == 400 and "reference" in empty.text
    wrong = o.post(f"/ui/cra/cases/{cid}/submit", data={"csrf": token, "submission": "final_report", "reference": "r"})
    assert wrong.status_code == 409, "a submission the case's state does not allow"
    assert t.api.get(f"/api/v1/cra/cases/{cid}").json()["state"] == "early_warning_due", "refused writes changed nothing"
    r = o.post(f"/ui/cra/cases/{cid}/submit", data={"csrf": token, "submission": "early_warning", "reference": f"SRP-1 {EVIL}"})
    assert r.status_code == 303
    case = t.api.get(f"/api/v1/cra/cases/{cid}").json()
    assert case["state"] == "notification_due"
    assert any(e.get("reference") == f"SRP-1 {EVIL}" for e in case["entries"])
    page = o.get(f"/ui/cra/cases/{cid}").text
    assert "<script>alert" not in page and 'value="notification"' in page
    assert o.post(f"/ui/cra/cases/{cid}/dismiss", data={"csrf": token, "reason": ""}).status_code == 400
    assert o.post(f"/ui/cra/cases/{cid}/dismiss", data={"csrf": token, "reason": "not exploitable here"}).status_code == 303
    assert t.api.get(f"/api/v1/cra/cases/{cid}").json()["state"] == "dismissed"
    web = "user:ops (web)"
    assert {("cra.case.submit", web), ("cra.case.dismiss", web)} <= _actors(t.api, "cra.case.")


@dataclass
class VulnLab:
    records: Path  # the CVE records feed
    ca: Path
    bundle: Path  # release "1" of DEBIAN, signed for `ca`


@pytest.fixture(scope="module")
def vuln_lab(tmp_path_factory: pytest.TempPathFactory) -> VulnLab:
    """The feeds' files and one signed release: the release's SBOM names the source packages a device's
    reported binary packages come from (that is how the Debian tracker matches them)."""
    if not (SHARED / "cve").is_dir():
        pytest.skip(f"shared testdata not found: {SHARED}")
    work = tmp_path_factory.mktemp("ui-vulns")
    records = work / "cve-records.json"
    records.write_text(json.dumps([json.loads(p.read_text()) for p in sorted((SHARED / "cve").glob("CVE-*.json"))]))
    pki = make_pki(work / "pki")
    (work / "r1").mkdir()
    bundle = full_bundle(work / "r1", ext4(work, 1), "1", pki.cert, pki.key, DEBIAN)
    return VulnLab(records, pki.ca, bundle)


def _vuln_tenant(server: LiveServer, vuln_lab: VulnLab, *users: tuple[str, str]) -> Tenant:
    """The feeds imported, a fresh tenant with the lab's keyring and `users` (name, role), and release "1" of DEBIAN
    uploaded with an SBOM holding the vulnerable OpenSSL."""
    with server.client(server.admin) as a:
        import_feed(a, "cve-records", vuln_lab.records)
        import_feed(a, "debian-tracker", TRACKER)
    t = tenant(server)
    t.api.put("/api/v1/keyring", json={"pem": vuln_lab.ca.read_text()}).raise_for_status()
    for name, role in users:
        t.user(name, role)
    r = t.api.post("/api/v1/releases", content=vuln_lab.bundle.read_bytes())
    assert r.status_code == 201, r.text
    t.api.put(f"/api/v1/releases/{r.json()['id']}/sbom", content=debian_sbom(OLD_SSL)).raise_for_status()
    return t


def test_vulnerability_pages_filters_cve_exposure_and_device_findings(server: LiveServer, vuln_lab: VulnLab) -> None:
    t = _vuln_tenant(server, vuln_lab, ("watcher", "viewer"))
    name, auth = vuln_device(t.api, DEBIAN, "line-a")
    report(t.api, name, auth, "1", {"libssl3": OLD_SSL})
    scan(t.api)
    v = login(server, t, "watcher")
    listing = v.get("/ui/vulns").text
    assert 'href="/ui/vulns/CVE-2024-5535"' in listing
    assert "CVE-2024-5535" not in v.get("/ui/vulns", params={"kev": "1"}).text  # not known exploited
    for sev in re.findall(r'class="badge sev-(\w+)"', v.get("/ui/vulns", params={"severity": "high"}).text):
        assert sev in ("high", "critical")
    assert "CVE-2024-5535" in v.get("/ui/vulns", params={"device": name}).text
    assert v.get("/ui/vulns", params={"device": "nobody"}).status_code == 404
    assert v.get("/ui/vulns", params={"severity": "dire"}).status_code == 400
    page = v.get("/ui/vulns/CVE-2024-5535").text
    assert "3.0.14-1~deb12u1" in page and f"devices?name={name}" in page and "line-a" in page
    dev_id = t.api.get(f"/api/v1/devices/{name}").json()["id"]
    assert f'hx-get="/ui/devices/{dev_id}/findings"' in v.get(f"/ui/devices/{dev_id}").text
    findings = v.get(f"/ui/devices/{dev_id}/findings").text
    assert 'href="/ui/vulns/CVE-2024-5535"' in findings and "Security events" in findings and "<html" not in findings
    summary = v.get("/ui/overview/security").text
    assert re.search(r'<span class="n">[1-9]\d*</span> CVEs affect devices', summary)
    assert re.search(r'<span class="n">1</span> exposed devices', summary), summary


def test_vex_statements_set_and_withdrawn_from_the_cve_page(server: LiveServer, vuln_lab: VulnLab) -> None:
    """An operator sets a not_affected statement on the CVE page (the device is no longer exposed) and withdraws it
    (exposed again); a viewer's forged write and a write without the CSRF token change nothing; bad input is a 400
    naming the problem; the statement's text is escaped; the audit log names the web user."""
    t = _vuln_tenant(server, vuln_lab, ("op", "operator"), ("watcher", "viewer"))
    name, auth = vuln_device(t.api, DEBIAN, "line-a")
    report(t.api, name, auth, "1", {"libssl3": OLD_SSL})
    scan(t.api)
    cve, url = "CVE-2024-5535", "/ui/vulns/CVE-2024-5535"

    def exposed() -> int:
        r = t.api.get(f"/api/v1/vulnerabilities/{cve}")
        if r.status_code == 404 and "affects nothing" in r.text:  # not affected: the CVE shows nowhere
            return 0
        assert r.status_code == 200, r.text
        return int(r.json()["exposure"]["devices"])

    assert exposed() == 1
    statement = {
        "compatible": DEBIAN,
        "status": "not_affected",
        "justification": "vulnerable_code_not_in_execute_path",
        "impact_statement": EVIL,
    }
    viewer = login(server, t, "watcher")
    assert "Set a statement" not in viewer.get(url).text, "a viewer sees no VEX form"
    assert viewer.post(f"{url}/vex", data={**statement, "csrf": csrf(viewer)}).status_code == 403
    op = login(server, t, "op")
    assert op.post(f"{url}/vex", data=statement).status_code == 403, "no CSRF token"
    bad = op.post(f"{url}/vex", data={**statement, "status": "fine", "csrf": csrf(op)})
    assert bad.status_code == 400 and "status" in bad.text
    assert t.api.get("/api/v1/vex").json() == [] and exposed() == 1, "refused writes changed nothing"

    token = csrf(op, url)
    r = op.post(f"{url}/vex", data={**statement, "csrf": token})
    assert r.status_code == 303 and r.headers["location"] == url
    [st] = t.api.get("/api/v1/vex").json()
    assert st["status"] == "not_affected" and st["impact_statement"] == EVIL and st["actor"].startswith("user:op")
    assert exposed() == 0, "the statement applies at once"
    page = op.get(url).text  # the CVE page still shows it, with its statement
    assert page, "the CVE page of a CVE that VEX made not affecting anything"
    assert EVIL not in page and "&lt;script&gt;" in page, "the statement's text is escaped"
    assert f"/vex/{st['id']}/withdraw" in page
    assert op.post(f"{url}/vex/{2**70}/withdraw", data={"csrf": token}).status_code == 422, "an id out of range"
    assert viewer.post(f"{url}/vex/{st['id']}/withdraw", data={"csrf": csrf(viewer)}).status_code == 403
    r = op.post(f"{url}/vex/{st['id']}/withdraw", data={"csrf": token})
    assert r.status_code == 303 and t.api.get("/api/v1/vex").json() == [] and exposed() == 1
    assert {("vex.set", "user:op (web)"), ("vex.delete", "user:op (web)")} <= _actors(t.api, "vex.")


def test_exposure_over_time_is_sampled_after_scans_and_vex_and_plotted(server: LiveServer, vuln_lab: VulnLab) -> None:
    """A scan that exposes a device, a scan that changes nothing, a VEX statement that clears it: two samples, the
    API answers them with what caused each, and the vulnerability page plots them (viewers included)."""
    t = _vuln_tenant(server, vuln_lab, ("watcher", "viewer"))
    name, auth = vuln_device(t.api, DEBIAN, "line-a")
    report(t.api, name, auth, "1", {"libssl3": OLD_SSL})
    first = scan(t.api)
    scan(t.api)  # nothing moved: no new sample
    h = t.api.get("/api/v1/vulnerability-exposure").json()
    assert [(x["cause"], x["devices"]) for x in h["samples"]] == [(f"scan {first['id']} (full)", 1)], h
    assert h["before"] is None and h["now"]["devices"] == 1 and h["now"]["cves"] == h["samples"][0]["cves"] >= 1
    vex = {"compatible": DEBIAN, "cve": "CVE-2024-5535", "status": "not_affected",
           "justification": "vulnerable_code_not_in_execute_path"}  # fmt: skip
    assert t.api.put("/api/v1/vex", json=vex).status_code in (200, 201)
    h = t.api.get("/api/v1/vulnerability-exposure", params={"days": 7}).json()
    assert [(x["cause"], x["devices"]) for x in h["samples"]][-1] == ("vex", 0) and h["now"]["devices"] == 0
    for bad in ("0", "3651", "soon"):
        assert t.api.get("/api/v1/vulnerability-exposure", params={"days": bad}).status_code == 422
    v = login(server, t, "watcher")
    assert 'hx-get="/ui/exposure-history"' in v.get("/ui/vulns").text
    plot = v.get("/ui/exposure-history", headers={"hx-request": "true"}).text
    assert '<svg class="chart"' in plot and "<html" not in plot
    assert "exposed devices: <strong>0</strong>" in plot and plot.count('class="chart-line') == 2
    assert v.get("/ui/exposure-history", params={"days": "0"}).status_code == 422


def test_an_advisory_draft_is_published_from_the_advisories_page(server: LiveServer, vuln_lab: VulnLab) -> None:
    if not shutil.which("gpg"):
        pytest.skip("gpg is not installed (apt install gnupg): advisories are signed with it")
    t = _vuln_tenant(server, vuln_lab, ("op", "operator"), ("watcher", "viewer"))
    product = {"name": "Gateway", "manufacturer": "Acme", "support_end": "2031-12-31"}
    assert t.api.put(f"/api/v1/products/{DEBIAN}", json=product).status_code == 201
    scan(t.api)
    draft = t.api.post("/api/v1/cra/advisories", json={"compatible": DEBIAN, "cves": ["CVE-2024-5535"], "title": EVIL})
    assert draft.status_code == 201, draft.text
    aid, url = draft.json()["id"], f"/ui/cra/advisories/{draft.json()['id']}/publish"
    v, o = login(server, t, "watcher"), login(server, t, "op")
    assert "publish advisory" not in v.get("/ui/cra/advisories").text
    assert v.post(url, data={"csrf": csrf(v)}).status_code == 403
    assert o.post(url, data={}).status_code == 403, "no CSRF token"
    assert t.api.get(f"/api/v1/cra/advisories/{aid}").json()["state"] == "draft", "refused writes changed nothing"
    listing = o.get("/ui/cra/advisories").text
    assert f'action="{url}"' in listing and ESCAPED in listing and "<script>alert" not in listing
    r = o.post(url, data={"csrf": csrf(o, "/ui/cra/advisories")})
    assert r.status_code == 303
    published = t.api.get(f"/api/v1/cra/advisories/{aid}").json()
    assert published["state"] == "final" and published["version"] == 1
    assert f'action="{url}"' not in o.get("/ui/cra/advisories").text, "published: nothing left to publish"
    again = o.post(url, data={"csrf": csrf(o, "/ui/cra/advisories")})
    assert again.status_code == 409 and "revise" in again.text
    assert ("cra.advisory.publish", "user:op (web)") in _actors(t.api, "cra.advisory.")


def test_overview_draws_the_version_chart_as_escaped_svg(server: LiveServer) -> None:
    t = tenant(server)
    boot = t.api.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
    for i, version in enumerate(["1.0", "1.0", EVIL]):
        r = t.api.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": f"c{i}", "compatible": "Test Config"})
        auth = {"authorization": f"Bearer {r.json()['credential']}"}
        t.api.post(
            "/device/v1/reports", json={"events": [], "inventory": {"os_version": version}}, headers=auth
        ).raise_for_status()
    b, deadline = login(server, t, "admin"), time.monotonic() + 20
    while "<title>1.0: 2 devices</title>" not in (page := b.get("/ui/").text):  # the reports are applied in batches
        assert time.monotonic() < deadline, "the reports never arrived"
        time.sleep(0.2)
    chart = re.search(r'<svg class="chart".*?</svg>', page, re.S)
    assert chart and 'role="img"' in chart.group(0)
    assert "<title>1.0: 2 devices</title>" in chart.group(0) and "<script>" not in chart.group(0)
    assert "&lt;script&gt;" in chart.group(0)


def test_the_tokens_page_pages_each_kind_on_its_own(server: LiveServer) -> None:
    t = tenant(server)
    names = [f"boot-{i:03d}" for i in range(105)]
    for name in names:
        t.api.post("/api/v1/bootstrap-tokens", json={"name": name}).raise_for_status()
    b = login(server, t, "admin")
    first = b.get("/ui/tokens").text
    shown = re.findall(r"<td>(boot-\d{3})</td>", first)
    assert shown == names[:100]
    more = re.search(r'href="/ui/tokens\?boot_cursor=([^"&]+)" rel="next">Next bootstrap tokens', first)
    assert more, "a link to the next page of bootstrap tokens"
    assert "Next API tokens" not in first, "one page of API tokens: no link"
    second = b.get(f"/ui/tokens?boot_cursor={more.group(1)}").text
    assert re.findall(r"<td>(boot-\d{3})</td>", second) == names[100:] and "Next bootstrap tokens" not in second
    assert b.get("/ui/tokens", params={"boot_cursor": "garbage"}).status_code == 400
