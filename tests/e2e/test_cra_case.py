"""Article 14 end to end with lab devices (real RAUC services and agents): a KEV update makes a CVE exploited that the
lab devices on 1.0 are exposed to, a case opens with the suggested awareness time, confirming it sets the 24 h and
72 h deadlines, the notification carries the fleet's Member States and device counts, and the fixing release 2.0,
rolled out through RAUC, makes the final report due 14 days after it became available. No sleeping on timers: every
deadline is checked against the recorded times."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from tests.e2e.conftest import COMPATIBLE, Fleet, build_release
from tests.server.vuln_fixtures import CDX_YOCTO, KEV, import_feed, make_lab, scan

CVE = "CVE-2024-36971"


def _sbom(kernel: bool) -> bytes:
    doc = json.loads(CDX_YOCTO.read_text())
    if not kernel:  # the fixing release: the kernel the CVE is in is gone
        doc["components"] = [c for c in doc["components"] if c["bom-ref"] != "kernel"]
        doc["vulnerabilities"] = [v for v in doc["vulnerabilities"] if v["affects"][0]["ref"] != "kernel"]
    doc["serialNumber"] = f"urn:uuid:{uuid.uuid4()}"
    return json.dumps(doc).encode()


def _t(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def test_a_kev_update_opens_a_case_and_the_rolled_out_fix_sets_the_final_report(fleet: Fleet) -> None:
    feeds = make_lab(fleet.work / "feeds").feeds
    with fleet.server.client(fleet.server.admin) as a:
        import_feed(a, "cve-records", feeds["cve-records"])
        import_feed(a, "cisa-kev", feeds["kev-without-36971"])
    v1 = fleet.upload(build_release(fleet.work, "1.0", fleet.pki))
    with fleet.api() as c:
        assert c.put(f"/api/v1/releases/{v1['id']}/sbom", content=_sbom(kernel=True)).status_code == 200
        body = {"name": "Lab Gateway", "manufacturer": "Acme", "support_end": "2031-12-31"}
        assert c.put(f"/api/v1/products/{COMPATIBLE}", json=body).status_code == 201
    for name, country in (("lab-de-1", "DE"), ("lab-de-2", "DE"), ("lab-fr-1", "FR")):
        fleet.device(name, attributes={"country": country})
    fleet.wait(
        lambda: all(fleet.show(d.spec.name)["reported"].get("os_version") == "1.0" for d in fleet.devices), 90, "inventories"
    )
    with fleet.api() as c:
        scan(c)
        assert c.get("/api/v1/cra/cases").json() == []

    with fleet.server.client(fleet.server.admin) as a:
        import_feed(a, "cisa-kev", KEV)  # CISA lists the kernel CVE: exploited, and the lab fleet runs it
    with fleet.api() as c:
        [event] = c.get("/api/v1/audit", params={"action": "vuln.kev_exploited"}).json()
        [case] = c.get("/api/v1/cra/cases").json()
        assert case["state"] == "awareness_pending" and case["cves"] == [CVE]
        assert _t(case["suggested_awareness_at"]) == _t(event["at"])
        cid = case["id"]

        confirmed = c.post(f"/api/v1/cra/cases/{cid}/confirm", json={}).json()
        aware = _t(confirmed["awareness_at"])
        assert _t(confirmed["deadlines"]["early_warning"]) == aware + dt.timedelta(hours=24)
        assert _t(confirmed["deadlines"]["notification"]) == aware + dt.timedelta(hours=72)

        note = c.get(f"/api/v1/cra/cases/{cid}/submissions/notification").json()["fields"]
        assert note["member_states"] == {"DE": 2, "FR": 1} and note["devices"]["affected"] == 3
        assert note["affected_versions"] == {COMPATIBLE: ["1.0"]}
        for i, sub in enumerate(("early_warning", "notification")):
            r = c.post(f"/api/v1/cra/cases/{cid}/submissions", json={"submission": sub, "reference": f"SRP-{i}"})
            assert r.status_code == 201, r.text

    v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
    with fleet.api() as c:
        assert c.put(f"/api/v1/releases/{v2['id']}/sbom", content=_sbom(kernel=False)).status_code == 200
        scan(c)
        r = c.post("/api/v1/rollouts", json={"name": "fix", "release_id": v2["id"], "target": {"groups": ["lab"]}})
        assert r.status_code == 201, r.text

    def rollout() -> dict[str, Any]:
        with fleet.api() as c:
            doc: dict[str, Any] = c.get("/api/v1/rollouts/fix").json()
            return doc

    fleet.wait(lambda: rollout()["status"] == "finished", 240, "the fix to be rolled out")
    assert all(d.booted == "B" for d in fleet.devices)
    fleet.wait(
        lambda: all(fleet.show(d.spec.name)["reported"].get("os_version") == "2.0" for d in fleet.devices), 60, "2.0 reported"
    )
    with fleet.api() as c:
        shown = c.get(f"/api/v1/cra/cases/{cid}").json()
        assert shown["state"] == "final_report_due"
        assert shown["corrective"]["release_id"] == v2["id"] and shown["corrective"]["origin"] == "exposure"
        assert _t(shown["deadlines"]["final_report"]) == _t(v2["created_at"]) + dt.timedelta(days=14)
        progress = shown["fields"]["corrective_measure_progress"]
        assert progress["devices_running_fix"] == 3 and progress["rollouts"][0]["succeeded"] == 3

        r = c.post(f"/api/v1/cra/cases/{cid}/submissions", json={"submission": "final_report", "reference": "SRP-2"})
        assert r.status_code == 201 and r.json()["state"] == "closed"
        final = c.get(f"/api/v1/cra/cases/{cid}/submissions/final_report").json()
        assert final["submitted"]["reference"] == "SRP-2"
        assert final["fields"]["corrective_measure_progress"]["rollouts"][0]["succeeded"] == 3
        sent = c.get(f"/api/v1/cra/cases/{cid}/submissions/notification").json()  # as submitted, before the fix
        assert sent["fields"]["member_states"] == {"DE": 2, "FR": 1} and sent["fields"]["devices"]["affected"] == 3
