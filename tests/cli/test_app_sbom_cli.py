"""`bulkhead app create --sbom`, `bulkhead app sbom` and `bulkhead vuln scan` (waits for the job, or --no-wait)
against a live server: an app's vulnerable component shows up for the device that runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import cli
from tests.live import LiveServer
from tests.server.test_app_sboms import SHOP, shop
from tests.server.test_vulns_osv import OSV_RECORDS, run_apps
from tests.server.vuln_fixtures import device


def ok(srv: LiveServer, token: str, *args: str) -> Any:
    res = cli(srv, token, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_app_sboms_and_scans_from_the_cli(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    assert ok(srv, srv.admin, "vuln", "import", str(OSV_RECORDS), "--feed", "osv")["records"] == 2
    created = ok(srv, token, "app", "create", "shop", "1.0", "--image", "reg.example:5000/shop:1.0", "--sbom", str(SHOP))
    assert created["sbom"]["components"] == 4
    ok(srv, token, "app", "create", "shop", "1.1", "--image", "reg.example:5000/shop:1.1")
    fixed = tmp_path / "shop-1.1.cdx.json"
    fixed.write_text(json.dumps(shop(requests="2.31.0", lodash="4.17.21")))
    assert ok(srv, token, "app", "sbom", "shop", "1.1", str(fixed))["spec_version"] == "1.5"
    out = tmp_path / "got.json"
    res = cli(srv, token, "app", "sbom", "shop", "1.1", "--get", "--out", str(out))
    assert res.returncode == 0 and json.loads(out.read_text()) == json.loads(fixed.read_text()), res.stderr

    with srv.client(token) as c:
        name, auth = device(c, "app-box")
        run_apps(c, name, auth, {"shop": "1.0"})
    queued = ok(srv, token, "vuln", "scan", "--no-wait")
    assert queued["status"] in ("queued", "running", "done") and queued["status_url"].endswith(f"/scans/{queued['id']}")
    run = ok(srv, token, "vuln", "scan")  # waits for its job
    assert run["status"] == "done" and run["counts"]["profiles"] >= 0 and run["finished_at"]
    rows = {r["cve"]: r for r in ok(srv, token, "vuln", "list", "--device", name)}
    assert rows["CVE-2023-32681"]["status"] == "affected"
    assert rows["CVE-2023-32681"]["components"] == ["requests 2.28.0 (app shop 1.0)"]


def test_bad_sboms_exit_2_with_the_servers_message(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    spdx = tmp_path / "image.spdx.json"
    spdx.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "x",
                                "documentNamespace": "urn:x", "creationInfo": {"created": "2026-01-01T00:00:00Z"}}))  # fmt: skip
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    ok(srv, token, "app", "create", "shop", "1.0", "--image", "reg.example:5000/shop:1.0")
    for args, message in (
        (("app", "create", "shop", "2.0", "--image", "x", "--sbom", str(spdx)), "CycloneDX 1.4-1.6"),
        (("app", "create", "shop", "2.0", "--image", "x", "--sbom", str(junk)), "as JSON"),
        (("app", "sbom", "shop", "1.0", str(spdx)), "CycloneDX 1.4-1.6"),
        (("app", "sbom", "shop", "9.9", str(SHOP)), "does not exist"),
        (("app", "sbom", "shop", "1.0", "--get"), "has no SBOM"),
        (("app", "sbom", "shop", "1.0"), "give the SBOM file"),
    ):
        res = cli(srv, token, *args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert [a["version"] for a in ok(srv, token, "app", "list")] == ["1.0"]
