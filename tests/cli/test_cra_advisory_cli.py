"""`bulkhead cra advisory` and `bulkhead cra provider` against a live server: a draft made from the product's
findings, published, exported as the exact bytes the provider serves; bad input is exit code 2 with the server's
advice and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import cli
from tests.live import LiveServer
from tests.server.vuln_fixtures import DEBIAN, NEW_SSL, OLD_SSL, Lab, debian_sbom, import_feed, make_lab, release, scan

CVE = "CVE-2024-5535"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("advisory-cli"))


def test_create_publish_export(srv: LiveServer, lab: Lab, tmp_path: Path) -> None:
    token = srv.tenant(ca=lab.pki.ca)
    with srv.client(srv.admin) as a:
        import_feed(a, "cve-records", lab.feeds["cve-records"])
        import_feed(a, "debian-tracker", lab.feeds["debian-tracker"])
    with srv.client(token) as c:
        release(c, lab, DEBIAN, "1", debian_sbom(OLD_SSL))
        release(c, lab, DEBIAN, "2", debian_sbom(NEW_SSL))
        scan(c)
    res = cli(srv, token, "cra", "advisory", "create", DEBIAN, "--cve", CVE)
    assert res.returncode == 2 and "bulkhead cra product set" in res.stderr  # no product yet
    res = cli(srv, token, "cra", "product", "set", DEBIAN, "--name", "Gateway", "--manufacturer", "Acme")
    assert res.returncode == 0, res.stderr
    res = cli(srv, token, "cra", "advisory", "create", DEBIAN, "--cve", CVE, "--cvss", "nonsense")
    assert res.returncode == 2 and "CVE=VECTOR" in res.stderr
    res = cli(srv, token, "cra", "advisory", "list", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == []

    res = cli(srv, token, "cra", "advisory", "create", DEBIAN, "--cve", CVE, "--preview")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["document"]["category"] == "csaf_security_advisory"
    res = cli(srv, token, "cra", "advisory", "create", DEBIAN, "--cve", CVE)
    assert res.returncode == 0 and "known_affected" in res.stdout and "vendor_fix" in res.stdout, res.stderr
    adv = json.loads(cli(srv, token, "cra", "advisory", "list", "--json").stdout)[0]
    assert adv["state"] == "draft"
    res = cli(srv, token, "cra", "provider", "set", "--contact", "psirt@acme.example")
    assert res.returncode == 0, res.stderr
    res = cli(srv, token, "cra", "advisory", "publish", str(adv["id"]), "--json")
    assert res.returncode == 0, res.stderr
    pub = json.loads(res.stdout)
    assert pub["state"] == "final" and pub["version"] == 1
    out = tmp_path / pub["file"]
    res = cli(srv, token, "cra", "advisory", "export", str(adv["id"]), "-o", str(out))
    assert res.returncode == 0, res.stderr
    served = httpx.get(pub["url"])
    assert served.status_code == 200 and served.content == out.read_bytes()
    res = cli(srv, token, "cra", "advisory", "publish", str(adv["id"]))
    assert res.returncode == 2 and "revise it first" in res.stderr
    res = cli(srv, token, "cra", "advisory", "revise", str(adv["id"]), "--change", "Fix confirmed.")
    assert res.returncode == 0 and "revised" in res.stdout, res.stderr
    res = cli(srv, token, "cra", "provider", "show")
    assert res.returncode == 0 and "provider-metadata.json" in res.stdout and "psirt@acme.example" in res.stdout
