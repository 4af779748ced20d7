"""Article 14 cases on a live server (SQLite and PostgreSQL): a KEV update that makes a CVE exploited which devices are
exposed to opens a case with the suggested awareness time; confirming it sets the 24 h and 72 h deadlines; a release
that fixes the CVE sets the final report's; the exported submissions carry the Member States and device counts;
bad input is refused with a clear 4xx and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from bulkhead.cra.article14 import add_month
from tests.delta.conftest import full_bundle
from tests.server.conftest import LiveServer
from tests.server.test_schemas import Checker
from tests.server.vuln_fixtures import CDX_YOCTO, YOCTO, Lab, import_feed, make_lab, release, report, scan

CVE = "CVE-2024-36971"  # a kernel CVE in the Yocto SBOM, in CISA's KEV catalogue


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    work = tmp_path_factory.mktemp("cra")
    lab = make_lab(work)
    d = work / "yocto-2"
    d.mkdir()
    lab.bundles[(YOCTO, "2")] = full_bundle(d, work / "rootfs-1.ext4", "2", lab.pki.cert, lab.pki.key, YOCTO)
    return lab


@pytest.fixture(scope="module")
def checker(server: LiveServer) -> Checker:
    return Checker(httpx.get(server.url + "/openapi.json").json())


@contextmanager
def checked(server: LiveServer, checker: Checker, token: str) -> Iterator[httpx.Client]:
    with server.client(token) as c:
        c.event_hooks["response"].append(checker)
        yield c


def _t(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _device(c: httpx.Client, country: str | None) -> tuple[str, dict[str, str]]:
    name = f"d-{uuid.uuid4().hex[:8]}"
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": name}).json()
    attributes = {"country": country} if country else {}
    body = {"bootstrap_token": boot["token"], "name": name, "compatible": YOCTO, "attributes": attributes}
    r = c.post("/device/v1/enroll", json=body)
    assert r.status_code == 201, r.text
    return name, {"authorization": f"Bearer {r.json()['credential']}"}


def _fixed_sbom() -> bytes:
    """The Yocto SBOM without the kernel component: a release the kernel CVE no longer touches."""
    doc = json.loads(CDX_YOCTO.read_text())
    doc["components"] = [comp for comp in doc["components"] if comp["bom-ref"] != "kernel"]
    doc["vulnerabilities"] = [v for v in doc["vulnerabilities"] if v["affects"][0]["ref"] != "kernel"]
    doc["serialNumber"] = f"urn:uuid:{uuid.uuid4()}"
    return json.dumps(doc).encode()


def _cases(c: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = c.get("/api/v1/cra/cases", params=params)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()
    return out


def test_a_kev_update_opens_a_case_whose_deadlines_follow_awareness_and_the_fix(
    server: LiveServer, lab: Lab, checker: Checker
) -> None:
    token = server.tenant(ca=lab.pki.ca)
    with checked(server, checker, token) as c:
        with server.client(server.admin) as a:
            import_feed(a, "cve-records", lab.feeds["cve-records"])
            import_feed(a, "cisa-kev", lab.feeds["kev-without-36971"])
        r = c.put(f"/api/v1/products/{YOCTO}", json={"name": "Gateway 3", "manufacturer": "Acme", "support_end": "2031-12-31"})
        assert r.status_code == 201, r.text
        release(c, lab, YOCTO, "1", CDX_YOCTO.read_bytes())
        fleet = [_device(c, country) for country in ("DE", "DE", "fr", "US", None)]
        for name, auth in fleet:
            report(c, name, auth, "1")
        scan(c)
        assert _cases(c) == []

        with server.client(server.admin) as a:
            import_feed(a, "cisa-kev", lab.feeds["cisa-kev"])  # CISA adds the CVE: exploited, and it affects the fleet
        [event] = c.get("/api/v1/audit", params={"action": "vuln.kev_exploited"}).json()
        [case] = _cases(c)
        assert case["state"] == "awareness_pending" and case["source"] == "kev" and case["cves"] == [CVE]
        assert _t(case["suggested_awareness_at"]) == _t(event["at"])  # the signal's time is suggested
        assert case["awareness_at"] is None and case["deadlines"] == {
            "early_warning": None,
            "notification": None,
            "final_report": None,
        }
        assert case["signal"]["devices"] == 5 and case["allowed"] == ["confirm", "dismiss"]
        assert [e["action"] for e in c.get("/api/v1/audit", params={"action": "cra.case.open"}).json()] == ["cra.case.open"]
        with server.client(server.admin) as a:
            import_feed(a, "cisa-kev", lab.feeds["cisa-kev"])  # the same catalogue again: no second case
        assert len(_cases(c)) == 1

        # a person confirms the suggested time: early warning 24 h and notification 72 h after it
        r = c.post(f"/api/v1/cra/cases/{case['id']}/confirm", json={})
        assert r.status_code == 200, r.text
        confirmed = r.json()
        aware = _t(confirmed["awareness_at"])
        assert aware == _t(case["suggested_awareness_at"]) and confirmed["state"] == "early_warning_due"
        assert _t(confirmed["deadlines"]["early_warning"]) == aware + dt.timedelta(hours=24)
        assert _t(confirmed["deadlines"]["notification"]) == aware + dt.timedelta(hours=72)
        assert confirmed["deadlines"]["final_report"] is None and confirmed["overdue"] == []

        # the fixing release v2 arrives and is rolled out: the final report is due 14 days after v2 became available
        r2 = release(c, lab, YOCTO, "2", _fixed_sbom())
        scan(c)
        v2 = c.get(f"/api/v1/releases/{r2}").json()
        r = c.post("/api/v1/rollouts", json={"name": "fix", "release_id": r2, "target": {"compatible": YOCTO}})
        assert r.status_code == 201, r.text
        shown = c.get(f"/api/v1/cra/cases/{case['id']}").json()
        assert shown["corrective"] == {"origin": "exposure", "release_id": r2, "version": "2", "compatible": YOCTO}
        assert _t(shown["corrective_at"]) == _t(v2["created_at"])
        assert _t(shown["deadlines"]["final_report"]) == _t(v2["created_at"]) + dt.timedelta(days=14)

        fields = shown["fields"]
        assert fields["member_states"] == {"DE": 2, "FR": 1} and fields["countries_outside_eu"] == {"US": 1}
        assert fields["devices"]["affected"] == 5 and fields["devices"]["in_member_states"] == 3
        assert fields["devices"]["country_unknown"] == 1
        assert fields["affected_versions"] == {YOCTO: ["1"]} and fields["cve_ids"] == [CVE]
        assert fields["product"] == [
            {"compatible": YOCTO, "name": "Gateway 3", "manufacturer": "Acme", "support_end": "2031-12-31"}
        ]
        assert fields["exploitation"]["actively_exploited"] is True and fields["exploitation"]["kev_date_added"] == "2024-08-07"
        progress = fields["corrective_measure_progress"]
        assert progress["release"]["version"] == "2" and progress["rollouts"][0]["name"] == "fix"
        assert progress["rollouts"][0]["devices"] == 5 and progress["devices_running_fix"] == 0

        # the early warning, exported before it is sent, then recorded with its reference
        early = c.get(f"/api/v1/cra/cases/{case['id']}/submissions/early_warning").json()
        assert early["submitted"] is None and early["fields"]["member_states"] == {"DE": 2, "FR": 1}
        assert "devices" not in early["fields"]  # the early warning asks for less than the notification
        r = c.post(
            f"/api/v1/cra/cases/{case['id']}/submissions", json={"submission": "early_warning", "reference": "SRP-2026-0001"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "notification_due" and r.json()["entry"]["reference"] == "SRP-2026-0001"
        c.patch(
            f"/api/v1/cra/cases/{case['id']}", json={"assignee": "psirt-lead", "mitigations": "block TC qdisc"}
        ).raise_for_status()
        r = c.post(
            f"/api/v1/cra/cases/{case['id']}/submissions", json={"submission": "notification", "reference": "SRP-2026-0002"}
        )
        assert r.status_code == 201 and r.json()["state"] == "final_report_due"
        note = {"text": "CSIRT DE asks for an intermediate report", "kind": "csirt_request", "reference": "CERT-Bund-77"}
        assert c.post(f"/api/v1/cra/cases/{case['id']}/notes", json=note).status_code == 201

        sent = c.get(f"/api/v1/cra/cases/{case['id']}/submissions/notification").json()
        assert sent["submitted"]["reference"] == "SRP-2026-0002" and sent["submitted"]["by"].startswith("user:")
        assert sent["fields"]["devices"]["affected"] == 5 and sent["fields"]["member_states"] == {"DE": 2, "FR": 1}
        assert sent["fields"]["mitigations"] == "block TC qdisc"
        assert sent["fields"]["corrective_measure"]["version"] == "2"
        shown = c.get(f"/api/v1/cra/cases/{case['id']}").json()
        assert shown["assignee"] == "psirt-lead"
        assert [(e["kind"], e["reference"]) for e in shown["entries"]] == [
            ("submission", "SRP-2026-0001"),
            ("submission", "SRP-2026-0002"),
            ("csirt_request", "CERT-Bund-77"),
        ]
    with server.client(token) as c:  # the printable page (not JSON: outside the schema checker)
        page = c.get(f"/api/v1/cra/cases/{case['id']}/submissions/notification", params={"format": "html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<td>2</td>" in page.text and "<th>DE</th>" in page.text
        assert "Gateway 3" in page.text and "<th>member states</th>" in page.text
        actions = {e["action"] for e in c.get("/api/v1/audit", params={"action": "cra."}).json()}
        assert {"cra.case.open", "cra.case.confirm", "cra.case.corrective", "cra.case.submit", "cra.case.update"} <= actions
        assert "cra.case.csirt_request" in actions and "cra.product.set" in actions


def test_an_incident_opened_by_hand_is_due_a_month_after_its_notification(server: LiveServer, checker: Checker) -> None:
    with checked(server, checker, server.tenant()) as c:
        aware = "2026-09-14T08:00:00+00:00"
        r = c.post(
            "/api/v1/cra/cases",
            json={
                "kind": "incident",
                "title": "Update server breached",
                "compatible": "Test Config",
                "suggested_awareness_at": aware,
            },
        )
        assert r.status_code == 201, r.text
        case = r.json()
        assert case["state"] == "awareness_pending" and case["source"] == "manual"
        confirmed = c.post(f"/api/v1/cra/cases/{case['id']}/confirm", json={"awareness_at": aware}).json()
        assert confirmed["deadlines"]["early_warning"] == "2026-09-15T08:00:00+00:00"
        assert confirmed["deadlines"]["notification"] == "2026-09-17T08:00:00+00:00"
        assert confirmed["overdue"] == ["early_warning", "notification"]  # awareness was long ago
        for i, sub in enumerate(("early_warning", "notification")):
            r = c.post(f"/api/v1/cra/cases/{case['id']}/submissions", json={"submission": sub, "reference": f"R{i}"})
            assert r.status_code == 201, r.text
        done = r.json()
        assert _t(done["deadlines"]["final_report"]) == add_month(_t(done["notified_at"]))
        assert done["allowed"] == ["final_report"]


def test_bad_input_is_refused_clearly_and_changes_nothing(server: LiveServer, checker: Checker) -> None:
    token = server.tenant()
    with checked(server, checker, token) as c:
        viewer = c.post("/api/v1/tokens", json={"name": "ro", "user": "vera", "role": "viewer"}).json()["token"]
        base = {"kind": "vulnerability", "title": "t", "cves": ["CVE-2024-3094"]}
        bad = [
            ({**base, "kind": "breach"}, 422, "kind"),
            ({**base, "cves": ["not a cve"]}, 400, "not a vulnerability id"),
            ({**base, "cves": [], "compatible": None}, 400, "name the product"),
            ({**base, "suggested_awareness_at": "2999-01-01T00:00:00Z"}, 400, "future"),
            ({**base, "suggested_awareness_at": "2026-01-01T00:00:00"}, 400, "time zone"),
            ({**base, "suggested_awareness_at": "0001-01-01T00:00:00+05:00"}, 400, "plausible"),
            ({**base, "title": ""}, 422, "title"),
            ({**base, "extra": 1}, 422, "extra"),
        ]
        for body, status, message in bad:
            r = c.post("/api/v1/cra/cases", json=body)
            assert r.status_code == status and message in r.json()["message"], (body, r.text)
            assert {"error", "message"} <= set(r.json())
        assert _cases(c) == []  # nothing half-created

        case = c.post("/api/v1/cra/cases", json=base).json()
        cid = case["id"]
        refused = [
            (
                "post",
                f"/api/v1/cra/cases/{cid}/submissions",
                {"submission": "notification", "reference": "x"},
                409,
                "cannot take",
            ),
            ("post", f"/api/v1/cra/cases/{cid}/submissions", {"submission": "early_warning", "reference": ""}, 422, "reference"),
            ("post", f"/api/v1/cra/cases/{cid}/confirm", {"awareness_at": "2999-01-01T00:00:00Z"}, 400, "future"),
            ("post", f"/api/v1/cra/cases/{cid}/confirm", {"awareness_at": "yesterday"}, 422, "awareness_at"),
            ("put", f"/api/v1/cra/cases/{cid}/corrective", {}, 400, "release_id"),
            ("put", f"/api/v1/cra/cases/{cid}/corrective", {"release_id": 999999}, 404, "does not exist"),
            ("post", "/api/v1/cra/cases/999999/confirm", {}, 404, "does not exist"),
            ("post", f"/api/v1/cra/cases/{cid}/notes", {"text": "x", "kind": "gossip"}, 422, "kind"),
        ]
        for method, path, body, status, message in refused:
            r = c.request(method, path, json=body)
            assert r.status_code == status and message in r.json()["message"], (path, body, r.text)
        assert c.get("/api/v1/cra/cases", params={"state": "sleeping"}).status_code == 400
        after = c.get(f"/api/v1/cra/cases/{cid}").json()
        assert after["state"] == "awareness_pending" and after["awareness_at"] is None and after["entries"] == []
        assert after["corrective"] is None

        dismissed = c.post(f"/api/v1/cra/cases/{cid}/dismiss", json={"reason": "not in our kernel config"}).json()
        assert dismissed["state"] == "dismissed" and dismissed["allowed"] == []
        r = c.post(f"/api/v1/cra/cases/{cid}/confirm", json={})
        assert r.status_code == 409 and "it is final" in r.json()["message"]
    with server.client(viewer) as v:
        assert v.get(f"/api/v1/cra/cases/{cid}").status_code == 200  # viewers read
        r = v.post(f"/api/v1/cra/cases/{cid}/notes", json={"text": "hi"})
        assert r.status_code == 403 and "operator" in r.json()["message"]
        assert v.post("/api/v1/cra/cases", json=base).status_code == 403
    with server.client(server.tenant()) as other:  # another tenant sees nothing of it
        assert other.get(f"/api/v1/cra/cases/{cid}").status_code == 404
