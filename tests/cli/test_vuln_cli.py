"""`bulkhead vuln` and `bulkhead vex` against a live server: feed import, scan, list, show, VEX set/export, and
exit code 2 with the server's message for bad input."""

from __future__ import annotations

import functools
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bulkhead.server.errors import SettingsError
from bulkhead.server.settings import load_settings
from tests.cli.conftest import cli
from tests.live import LiveServer, live_server
from tests.server.vuln_fixtures import DEBIAN, OLD_SSL, TRACKER, Lab, debian_sbom, device, make_lab, report

EPSS = Path(__file__).parents[1] / "cra/data/epss-excerpt.csv"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("vuln-cli"))


def ok(srv: LiveServer, token: str, *args: str) -> Any:
    res = cli(srv, token, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_import_scan_list_show_and_vex(srv: LiveServer, lab: Lab, tmp_path: Path) -> None:
    token = srv.tenant(ca=lab.pki.ca)
    for name in ("cve-records", "debian-tracker", "cisa-kev"):
        assert ok(srv, srv.admin, "vuln", "import", str(lab.feeds[name]), "--feed", name)["has_data"] is True
    feeds = {f["name"]: f for f in ok(srv, token, "vuln", "feeds")}
    assert feeds["cve-records"]["records"] == 32 and feeds["first-epss"]["has_data"] is False

    rel = ok(srv, token, "release", "upload", str(lab.bundles[(DEBIAN, "1")]))
    sbom = tmp_path / "old.spdx.json"
    sbom.write_bytes(debian_sbom(OLD_SSL))
    ok(srv, token, "release", "sbom", str(rel["id"]), str(sbom))
    with srv.client(token) as c:
        name, auth = device(c, DEBIAN, "ring-1")
        report(c, name, auth, "1")

    run = ok(srv, token, "vuln", "scan")
    assert run["counts"]["releases"] == 1 and run["counts"]["profiles"] == 1
    rows = {r["cve"]: r for r in ok(srv, token, "vuln", "list", "--release", str(rel["id"]))}
    assert rows["CVE-2024-5535"]["status"] == "affected" and rows["CVE-2024-5535"]["fixed_versions"] == ["3.0.14-1~deb12u1"]
    assert [r["cve"] for r in ok(srv, token, "vuln", "list", "--group", "ring-1", "--status", "affected")] == ["CVE-2024-5535"]
    assert ok(srv, token, "vuln", "list", "--device", name, "--kev") == []
    shown = ok(srv, token, "vuln", "show", "CVE-2024-5535")
    assert shown["exposure"]["devices"] == 1 and shown["fix"]["versions"] == ["3.0.14-1~deb12u1"]
    assert [d["name"] for d in ok(srv, token, "vuln", "devices", "CVE-2024-5535")] == [name]
    human = cli(srv, token, "vuln", "show", "CVE-2024-5535")
    assert human.returncode == 0 and "3.0.14-1~deb12u1" in human.stdout and "devices affected" in human.stdout
    assert [r["kind"] for r in ok(srv, token, "vuln", "scans")] == ["full"]  # KEV changed nothing: no kev run

    st = ok(srv, token, "vex", "set", "--compatible", DEBIAN, "--cve", "CVE-2024-5535", "--status", "not_affected",
            "--justification", "code_not_present", "--impact", "the product never calls SSL_select_next_proto")  # fmt: skip
    assert st["status"] == "not_affected" and st["component"] is None
    assert ok(srv, token, "vuln", "show", "CVE-2024-5535")["exposure"]["devices"] == 0
    history = ok(srv, token, "vuln", "exposure", "--days", "7")
    assert [x["cause"] for x in history["samples"]][-1] == "vex" and history["now"]["devices"] == 0
    human = cli(srv, token, "vuln", "exposure")
    assert human.returncode == 0 and "scan" in human.stdout and "vex" in human.stdout and "now" in human.stdout
    assert [v["id"] for v in ok(srv, token, "vex", "list", "--cve", "CVE-2024-5535")] == [st["id"]]
    out = tmp_path / "product.openvex.json"
    res = cli(srv, token, "vex", "export", "--compatible", DEBIAN, "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert (
        doc["@context"].startswith("https://openvex.dev/")
        and doc["statements"][0]["justification"] == "vulnerable_code_not_present"
    )
    assert ok(srv, token, "vex", "delete", str(st["id"])) == {"deleted": st["id"]}
    assert ok(srv, token, "vuln", "show", "CVE-2024-5535")["exposure"]["devices"] == 1
    [back] = ok(srv, token, "vex", "import", str(out))  # the export imports back
    assert (back["compatible"], back["status"]) == (DEBIAN, "not_affected")
    assert ok(srv, token, "vuln", "show", "CVE-2024-5535")["exposure"]["devices"] == 0

    cdx = tmp_path / "product.cdx.json"  # and as CycloneDX VEX: exported, withdrawn, imported (format detected)
    res = cli(srv, token, "vex", "export", "--compatible", DEBIAN, "--format", "cyclonedx", "--out", str(cdx))
    assert res.returncode == 0 and "1 statements written" in res.stderr, res.stderr
    [vuln] = json.loads(cdx.read_text())["vulnerabilities"]
    assert vuln["id"] == "CVE-2024-5535" and vuln["analysis"]["state"] == "not_affected"
    assert ok(srv, token, "vex", "delete", str(back["id"])) == {"deleted": back["id"]}
    [again] = ok(srv, token, "vex", "import", str(cdx))
    assert (again["compatible"], again["status"], again["justification"]) == (DEBIAN, "not_affected", "code_not_present")
    assert "member states" in cli(srv, token, "vuln", "show", "CVE-2024-5535").stdout


def test_bad_input_exits_2_with_the_servers_message(srv: LiveServer, lab: Lab, tmp_path: Path) -> None:
    token = srv.tenant(ca=lab.pki.ca)
    junk = tmp_path / "tracker.json"
    junk.write_text('["not", "the", "tracker"]')
    for args, message in (
        (("vuln", "import", str(junk), "--feed", "debian-tracker"), "administrator token"),
        (("vuln", "list", "--min-severity", "dire"), "--min-severity must be one of"),
        (("vuln", "list", "--release", "1", "--group", "g"), "at most one of"),
        (("vuln", "list", "--device", "nobody"), "device 'nobody' does not exist"),
        (("vuln", "show", "CVE-2099-0001"), "bulkhead vuln scan"),
        (("vex", "set", "--compatible", DEBIAN, "--cve", "CVE-2024-5535", "--status", "not_affected"), "needs a justification"),
        (("vex", "delete", "999999"), "does not exist"),
        (("vex", "import", str(junk)), "not a VEX document"),
        (("vex", "import", str(junk), "--format", "csaf"), "--format must be one of openvex, cyclonedx"),
        (("vex", "export", "--format", "spdx"), "--format must be one of openvex, cyclonedx"),
    ):
        res = cli(srv, token, *args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    for args, message in (
        (("vuln", "import", str(junk), "--feed", "debian-tracker"), "not a valid debian-tracker feed"),
        (("vuln", "import", str(junk), "--feed", "nvd-magic"), "unknown feed"),
    ):
        res = cli(srv, srv.admin, *args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert ok(srv, token, "vex", "list") == []


def test_sync_fetches_from_the_feed_mirror_and_a_failing_feed_keeps_its_data(lab: Lab, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(lab.feeds["cisa-kev"], mirror / "cisa-kev.json")
    shutil.copy(TRACKER, mirror / "debian-tracker.json")
    shutil.copy(EPSS, mirror / "first-epss.csv.gz")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(mirror)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = {"BULKHEAD_FEED_MIRROR": f"http://127.0.0.1:{httpd.server_address[1]}/"}
        with live_server(tmp_path / "data", env) as srv:
            token = srv.tenant()
            feeds = {f["name"]: f for f in ok(srv, srv.admin, "vuln", "sync")}
            for name in ("cisa-kev", "debian-tracker", "first-epss"):
                assert feeds[name]["ok"] and feeds[name]["origin"] == "http" and feeds[name]["url"].startswith(env[
                    "BULKHEAD_FEED_MIRROR"]), feeds[name]  # fmt: skip
            assert feeds["cve-records"]["has_data"] is False  # import only
            (mirror / "debian-tracker.json").unlink()
            ok(srv, srv.admin, "vuln", "sync")
            tracker = {f["name"]: f for f in ok(srv, token, "vuln", "feeds")}["debian-tracker"]
            assert tracker["has_data"] and not tracker["ok"] and "404" in tracker["last_error"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_feed_mirror_that_is_not_a_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BULKHEAD_FEED_MIRROR"):
        load_settings(feed_mirror="ftp://mirror/feeds", data_dir=tmp_path)
