"""App SBOMs matched with OSV in scans: a device running an app version whose SBOM lists a vulnerable PyPI / npm
package is exposed, with the app named; once it runs the fixed version it is not. The `osv` feed (JSON or a zip of
records); scans are jobs whose run shows queued/running/done/failed."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkhead.cra.feed_sources import OSV
from bulkhead.cra.osv_feed import import_osv, load_osv_index, with_ecosystems
from bulkhead.server.services.vuln_match import inventory_key
from tests.conftest import SHARED
from tests.server.conftest import LiveServer
from tests.server.test_app_sboms import CONTAINERS, shop
from tests.server.test_schemas import Checker
from tests.server.vuln_fixtures import cves, device, scan

DATA = Path(__file__).parent / "data"
OSV_RECORDS = DATA / "osv-app-records.json"  # derived, see data/README.md
BOX = "app-box"
REQUESTS_CVE, LODASH_CVE = "CVE-2023-32681", "CVE-2021-23337"


@pytest.fixture(scope="module")
def checker(server: LiveServer) -> Checker:
    return Checker(httpx.get(server.url + "/openapi.json").json())


def _osv(server: LiveServer, body: bytes) -> httpx.Response:
    with server.client(server.admin) as a:
        return a.post("/api/v1/vulnerability-feeds/osv/import", content=body)


def run_apps(c: httpx.Client, name: str, auth: dict[str, str], apps: dict[str, str]) -> None:
    """The device reports its containers (each naming its app and version), as the agent does."""
    containers = [{"name": f"{a}-web", "app": a, "version": v, "state": "running"} for a, v in apps.items()]
    inv: dict[str, Any] = {"os_version": "1", "containers": containers}
    r = c.post("/device/v1/reports", json={"events": [], "inventory": inv}, headers=auth)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while c.get(f"/api/v1/devices/{name}").json()["reported"] != inv:
        assert time.monotonic() < deadline, f"{name} never showed its apps"
        time.sleep(0.1)


def test_a_device_running_a_vulnerable_app_version_is_exposed_until_it_runs_the_fixed_one(
    server: LiveServer, checker: Checker
) -> None:
    r = _osv(server, OSV_RECORDS.read_bytes())
    assert r.status_code == 200 and r.json()["records"] == 2, r.text
    app = f"shop-{uuid.uuid4().hex[:6]}"
    with server.client(server.tenant()) as c:
        c.event_hooks["response"].append(checker)
        feeds = {f["name"]: f for f in c.get("/api/v1/vulnerability-feeds").json()}
        assert not feeds["osv"]["import_only"] and feeds["osv"]["records"] == 2 and "osv.dev" in feeds["osv"]["attribution"]
        for version, sbom in (("1.0", shop()), ("1.1", shop(requests="2.31.0", lodash="4.17.21"))):
            r = c.post("/api/v1/apps", json={"name": app, "version": version, "containers": CONTAINERS, "sbom": sbom})
            assert r.status_code == 201, r.text
        a, a_auth = device(c, BOX, "line-a")
        b, b_auth = device(c, BOX, "line-b")
        n, n_auth = device(c, BOX, "line-b")
        run_apps(c, a, a_auth, {app: "1.0"})
        run_apps(c, b, b_auth, {app: "1.0", "no-sbom": "3"})
        run_apps(c, n, n_auth, {app: "1.1"})

        run = scan(c)
        assert run["counts"]["profiles"] == 3 and run["feeds"]["osv"]["records"] == 2
        assert c.get(f"/api/v1/vulnerabilities/scans/{run['id']}").json()["status"] == "done"

        shown = c.get(f"/api/v1/vulnerabilities/{REQUESTS_CVE}").json()
        assert shown["exposure"] == {
            "devices": 2, "groups": {"line-a": 1, "line-b": 1}, "versions": {"1": 2}, "countries": {"unknown": 2}
        }  # fmt: skip
        rows = {(f["app_version"], f["status"]): f for f in shown["device_findings"]}
        affected = rows[("1.0", "affected")]
        assert (affected["app"], affected["component"], affected["component_version"], affected["devices"]) == (
            app, "requests", "2.28.0", 2
        )  # fmt: skip
        assert rows[("1.1", "fixed")]["fixed_version"] == "2.31.0" and rows[("1.1", "fixed")]["devices"] == 1
        assert sorted(d["name"] for d in c.get(f"/api/v1/vulnerabilities/{LODASH_CVE}/devices").json()) == sorted([a, b])

        mine = cves(c, device=a)
        assert set(mine) == {REQUESTS_CVE, LODASH_CVE} and mine[LODASH_CVE]["status"] == "affected"
        assert mine[REQUESTS_CVE]["components"] == [f"requests 2.28.0 (app {app} 1.0)"]
        # no CVE record held for it: the severity is the OSV record's own vector, scored
        assert (mine[REQUESTS_CVE]["severity"], mine[REQUESTS_CVE]["cvss"]) == ("medium", 6.1)
        assert {cve: row["status"] for cve, row in cves(c, device=n).items()} == {REQUESTS_CVE: "fixed", LODASH_CVE: "fixed"}

        # a is updated to the fixed version: once a scan has seen its report, it is no longer exposed
        run_apps(c, a, a_auth, {app: "1.1"})
        run = scan(c, "devices")
        assert run["counts"]["devices_mapped"] == 1 and run["counts"]["profiles"] == 0  # n's profile: seen already
        assert cves(c, device=a)[REQUESTS_CVE]["status"] == "fixed"
        exposure = c.get(f"/api/v1/vulnerabilities/{REQUESTS_CVE}").json()["exposure"]
        assert exposure == {"devices": 1, "groups": {"line-b": 1}, "versions": {"1": 1}, "countries": {"unknown": 1}}
        run_apps(c, b, b_auth, {app: "1.1", "no-sbom": "3"})
        scan(c, "devices")
        assert [d["name"] for d in c.get(f"/api/v1/vulnerabilities/{LODASH_CVE}/devices").json()] == []
        assert cves(c, status="affected") == {}


def test_osv_feed_from_a_zip_and_a_bad_file_keeps_the_last_good_copy(server: LiveServer) -> None:
    records = json.loads(OSV_RECORDS.read_text())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for rec in records:
            z.writestr(f"{rec['id']}.json", json.dumps(rec))
        go = SHARED / "cve/osv/GO-2024-2491.json"  # a real Go vuln DB record (runc), if the shared testdata is here
        if go.exists():
            z.writestr("GO-2024-2491.json", go.read_bytes())
    r = _osv(server, buf.getvalue())
    # a zip is one ecosystem's export: the ecosystem most of its records name (PyPI here) holds all of them
    assert r.status_code == 200 and r.json()["detail"]["ecosystems"]["PyPI"]["records"] == len(records) + go.exists(), r.text
    for body, message in (
        (b"[{}]", "the id is missing"),
        (b"{not json", "not JSON"),
        (json.dumps([{"id": "X-1", "affected": [{"package": {"name": "n"}}]}]).encode(), "ecosystem"),
    ):
        r = _osv(server, body)
        assert r.status_code == 422 and message in r.json()["message"], r.text
    with server.client(server.admin) as a:
        held = {f["name"]: f for f in a.get("/api/v1/vulnerability-feeds").json()}["osv"]
    assert held["detail"]["ecosystems"]["PyPI"]["records"] == len(records) + go.exists() and held["has_data"]


def test_scans_are_jobs_a_failed_run_says_why(server: LiveServer) -> None:
    token = server.tenant()
    with server.client(token) as c:
        r = c.post("/api/v1/vulnerabilities/scan", json={})
        assert r.status_code == 202 and r.json()["status"] in ("queued", "running", "done")
        assert r.headers["location"] == r.json()["status_url"] == f"/api/v1/vulnerabilities/scans/{r.json()['id']}"
        assert c.get("/api/v1/vulnerabilities/scans/999999999").status_code == 404
        first = r.json()["id"]
    with server.client(server.tenant()) as other:
        assert other.get(f"/api/v1/vulnerabilities/scans/{first}").status_code == 404

    # an OSV file that no longer parses (changed on disk behind the server's back) fails the next scan, with why
    rec = {**json.loads(OSV_RECORDS.read_text())[0], "id": f"GHSA-test-{uuid.uuid4().hex[:4]}"}
    assert _osv(server, json.dumps([rec]).encode()).status_code == 200
    path = server.data_dir / "feeds" / "osv" / "PyPI.zip"
    good = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(b"[{}]")
    # ... and its recorded digest with it, so no process answers from the copy it parsed before (the import may have
    # started a re-scan that parsed it already)
    state_path = server.data_dir / "feeds" / "osv.state.json"
    state = json.loads(state_path.read_text())
    state_path.chmod(0o644)
    state_path.write_text(json.dumps({**state, "sha256": "0" * 64}))
    try:
        with server.client(token) as c:
            url = c.post("/api/v1/vulnerabilities/scan", json={}).json()["status_url"]
            deadline = time.monotonic() + 60
            while (run := c.get(url).json())["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert run["status"] == "failed" and "PyPI.zip" in run["error"] and run["finished_at"], run
    finally:
        path.write_bytes(good)
        state_path.write_text(json.dumps(state))
    assert _osv(server, OSV_RECORDS.read_bytes()).status_code == 200


def test_the_profile_key_holds_the_app_set_not_the_container_states() -> None:
    def inv(*containers: tuple[str, str, str]) -> dict[str, Any]:
        return {
            "os_version": "1",
            "containers": [{"name": f"{a}-c", "app": a, "version": v, "state": st} for a, v, st in containers],
        }

    running, part = inventory_key(inv(("shop", "1.0", "running"), ("db", "2", "running")))
    assert part == {"apps": {"db": "2", "shop": "1.0"}}
    assert inventory_key(inv(("db", "2", "exited"), ("shop", "1.0", "running")))[0] == running  # same apps, same profile
    assert inventory_key(inv(("shop", "1.1", "running"), ("db", "2", "running")))[0] != running
    assert inventory_key({"os_version": "1", "containers": [{"error": "podman is not running"}]}) == ("", {})


def test_the_osv_index_is_by_ecosystem_and_normalised_name(tmp_path: Path) -> None:
    path = tmp_path / "osv.json"
    records = json.loads(OSV_RECORDS.read_text())
    records[0]["affected"][0]["package"]["name"] = "Requests"  # PyPI names compare normalised
    withdrawn = {**records[1], "id": "GHSA-gone", "withdrawn": "2024-01-01T00:00:00Z"}
    path.write_text(json.dumps({"records": [*records, withdrawn]}))
    source = with_ecosystems(OSV, ("PyPI", "npm"))
    import_osv(source, tmp_path, path)
    index = load_osv_index(tmp_path, source.parts)
    assert sorted(index.by_package) == [("PyPI", "requests"), ("npm", "lodash")]
    assert [r.id for r in index.get("npm", "lodash")] == ["GHSA-35jh-r3h4-6jhm"]  # the withdrawn record is left out
