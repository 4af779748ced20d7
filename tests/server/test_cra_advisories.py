"""CSAF advisories on a live server (SQLite and PostgreSQL): made from a product's findings, VEX and fixes, published
per tenant as a CSAF provider (provider-metadata.json, the white/<year>/ directory with hashes and OpenPGP signatures,
index.txt, changes.csv), with security.txt (RFC 9116) and HTML pages; valid against the vendored CSAF 2.0 schemas and
the mandatory tests of @secvisogram/csaf-validator-lib; signatures verify with gpg and sqv; bad input is a 4xx that
changes nothing."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.csaf_validators import mandatory_failures, schema_errors
from tests.live import live_server
from tests.server.conftest import LiveServer
from tests.server.test_schemas import Checker
from tests.server.vuln_fixtures import DEBIAN, NEW_SSL, OLD_SSL, Lab, debian_sbom, import_feed, make_lab, release, scan

CVE = "CVE-2024-5535"
VECTOR = "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:H"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("cra-advisories"))


@pytest.fixture(scope="module")
def checker(server: LiveServer) -> Checker:
    return Checker(httpx.get(server.url + "/openapi.json").json())


def _tenant_name(c: httpx.Client) -> str:
    r = c.get("/api/v1/cra/provider")
    assert r.status_code == 200, r.text
    name: str = r.json()["tenant"]
    return name


def _setup(server: LiveServer, lab: Lab, checker: Checker) -> tuple[httpx.Client, dict[str, int]]:
    c = server.client(server.tenant(ca=lab.pki.ca))
    c.event_hooks["response"].append(checker)
    with server.client(server.admin) as a:
        import_feed(a, "cve-records", lab.feeds["cve-records"])
        import_feed(a, "debian-tracker", lab.feeds["debian-tracker"])
    body = {"name": "Gateway <One>", "manufacturer": "Acme & Co", "support_end": "2031-12-31"}
    assert c.put(f"/api/v1/products/{DEBIAN}", json=body).status_code == 201
    rels = {"1": release(c, lab, DEBIAN, "1", debian_sbom(OLD_SSL)), "2": release(c, lab, DEBIAN, "2", debian_sbom(NEW_SSL))}
    scan(c)
    return c, rels


def parse_security_txt(text: str, url: str, now: dt.datetime) -> dict[str, list[str]]:
    """RFC 9116 section 2.5 / 3: fields `Name: value` one a line (comments start with #), names case-insensitive;
    Contact at least once, Expires exactly once, in the future (and should be less than a year away); Canonical,
    when present, names the URL it was fetched from. Raises AssertionError otherwise."""
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9-]+): (\S.*)", line)
        assert m, f"not a security.txt field line: {line!r}"
        fields.setdefault(m.group(1).lower(), []).append(m.group(2))
    assert text.endswith("\n")
    assert fields.get("contact"), "Contact is required"
    for contact in fields["contact"]:
        assert re.match(r"(mailto:|https://|tel:)", contact), contact
    assert len(fields.get("expires", [])) == 1, "Expires is required exactly once"
    expires = dt.datetime.fromisoformat(fields["expires"][0].replace("Z", "+00:00"))
    assert now < expires <= now + dt.timedelta(days=366)
    for key in ("policy", "canonical", "csaf"):
        for value in fields.get(key, []):
            assert value.startswith(("https://", "http://")), value  # http only on this test server
    assert len(fields.get("preferred-languages", [])) <= 1
    if "canonical" in fields:
        assert url in fields["canonical"]
    return fields


def _verify(tmp: Path, key: bytes, data: bytes, signature: bytes) -> None:
    """The detached signature verifies with gpg against the served key, and with sqv where it is installed."""
    home = tmp / "gnupg"
    home.mkdir(mode=0o700)
    (tmp / "key.asc").write_bytes(key)
    (tmp / "doc.json").write_bytes(data)
    (tmp / "doc.json.asc").write_bytes(signature)
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"}
    subprocess.run(["gpg", "--batch", "--import", str(tmp / "key.asc")], env=env, check=True, capture_output=True)
    r = subprocess.run(
        ["gpg", "--batch", "--status-fd", "1", "--verify", str(tmp / "doc.json.asc"), str(tmp / "doc.json")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "[GNUPG:] GOODSIG" in r.stdout, r.stderr
    if shutil.which("sqv"):
        (tmp / "key.gpg").write_bytes(
            subprocess.run(["gpg", "--batch", "--export"], env=env, check=True, capture_output=True).stdout
        )
        r = subprocess.run(
            ["sqv", "--keyring", str(tmp / "key.gpg"), str(tmp / "doc.json.asc"), str(tmp / "doc.json")],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
    (tmp / "doc.json").write_bytes(data + b" ")  # a changed document does not verify
    r = subprocess.run(["gpg", "--batch", "--verify", str(tmp / "doc.json.asc"), str(tmp / "doc.json")], env=env)
    assert r.returncode != 0


def _public(server: LiveServer, path: str) -> httpx.Response:
    r = httpx.get(server.url + path)  # no token: the provider is public
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
    return r


def test_advisory_is_published_as_a_csaf_provider(server: LiveServer, lab: Lab, checker: Checker, tmp_path: Path) -> None:
    if not shutil.which("gpg"):
        pytest.skip("gpg is not installed (apt install gnupg)")
    c, _ = _setup(server, lab, checker)
    tenant = _tenant_name(c)
    r = c.patch(
        "/api/v1/cra/provider",
        json={"contact": "psirt@acme.example", "policy": "https://acme.example/security-policy"},
    )
    assert r.status_code == 200, r.text
    body = {"compatible": DEBIAN, "cves": [CVE], "cvss": {CVE: VECTOR}, "title": "OpenSSL <b>SSL_select_next_proto</b>"}
    preview = c.post("/api/v1/cra/advisories/preview", json=body)
    assert preview.status_code == 200, preview.text
    assert c.get("/api/v1/cra/advisories").json() == []  # a preview stores nothing
    r = c.post("/api/v1/cra/advisories", json=body)
    assert r.status_code == 201, r.text
    adv = r.json()
    assert adv["state"] == "draft" and adv["version"] == 0 and adv["tracking_id"].startswith(tenant.upper() + "-")
    draft = adv["document"]
    assert draft["document"]["tracking"]["status"] == "draft" and schema_errors(draft) == []
    # nothing is public before it is published
    base = f"/{tenant}/.well-known/csaf"
    assert _public(server, f"{base}/white/index.txt").text == ""

    r = c.post(f"/api/v1/cra/advisories/{adv['id']}/publish")
    assert r.status_code == 200, r.text
    pub = r.json()
    assert pub["state"] == "final" and pub["version"] == 1 and re.fullmatch(r"[0-9A-F]{40}", pub["signed_by"])

    # provider-metadata.json: valid, names the directory and the key
    meta = _public(server, f"{base}/provider-metadata.json").json()
    assert schema_errors(meta, "provider_json_schema.json") == []
    assert meta["role"] == "csaf_trusted_provider" and meta["canonical_url"] == f"{server.url}{base}/provider-metadata.json"
    assert meta["distributions"] == [{"directory_url": f"{server.url}{base}/white/"}]
    assert meta["public_openpgp_keys"][0]["fingerprint"] == pub["signed_by"]
    assert meta["publisher"] == {
        "category": "vendor",
        "name": "Acme & Co",
        "namespace": f"{server.url}/{tenant}",
        "contact_details": "psirt@acme.example",
    }
    # index.txt and changes.csv name the document at white/<year>/<file>
    year = pub["initial_release_date"][:4]
    path = f"{year}/{pub['file']}"
    assert _public(server, f"{base}/white/index.txt").text == f"{path}\n"
    changes = list(csv.reader(io.StringIO(_public(server, f"{base}/white/changes.csv").text)))
    assert changes == [[path, pub["current_release_date"].replace("+00:00", "Z")]]
    served = _public(server, f"{base}/white/{path}")
    data = served.content
    assert served.headers["content-type"] == "application/json"
    assert _public(server, f"{base}/white/{path}.sha256").text == f"{hashlib.sha256(data).hexdigest()}  {pub['file']}\n"
    assert _public(server, f"{base}/white/{path}.sha512").text == f"{hashlib.sha512(data).hexdigest()}  {pub['file']}\n"
    key = httpx.get(meta["public_openpgp_keys"][0]["url"])
    assert key.status_code == 200 and b"BEGIN PGP PUBLIC KEY BLOCK" in key.content
    _verify(tmp_path, key.content, data, _public(server, f"{base}/white/{path}.asc").content)

    # the document: valid, the product tree from the releases, statuses from the findings, the fix by version
    doc = json.loads(data)
    assert schema_errors(doc) == []
    assert mandatory_failures(doc) == []
    v = doc["vulnerabilities"][0]
    assert v["cve"] == CVE
    assert v["product_status"] == {"fixed": [f"{DEBIAN}-2"], "known_affected": [f"{DEBIAN}-1"]}
    assert v["remediations"][0] == {
        "category": "vendor_fix",
        "details": "Update to Gateway <One> 2 or later.",
        "product_ids": [f"{DEBIAN}-1"],
    }
    assert v["scores"][0]["cvss_v3"]["vectorString"] == VECTOR
    assert any("2031-12-31" in n["text"] for n in doc["document"]["notes"])
    t = doc["document"]["tracking"]
    assert t["status"] == "final" and t["version"] == "1" and t["id"] == pub["tracking_id"]
    assert {"category": "self", "summary": "This advisory (CSAF)", "url": f"{server.url}{base}/white/{path}"} in doc["document"][
        "references"
    ]

    # security.txt (RFC 9116) points to the provider
    sec_url = f"{server.url}/{tenant}/.well-known/security.txt"
    sec = httpx.get(sec_url)
    assert sec.status_code == 200 and sec.headers["content-type"].startswith("text/plain")
    fields = parse_security_txt(sec.text, sec_url, dt.datetime.now(dt.UTC))
    assert fields["contact"] == ["mailto:psirt@acme.example"]
    assert fields["policy"] == ["https://acme.example/security-policy"]
    assert fields["csaf"] == [meta["canonical_url"]]

    # HTML pages: every value escaped
    stem = pub["file"].removesuffix(".json")
    page = _public(server, f"/{tenant}/advisories/{stem}.html").text
    assert "OpenSSL &lt;b&gt;SSL_select_next_proto&lt;/b&gt;" in page and "<b>SSL" not in page
    assert "Gateway &lt;One&gt; 2" in page and "Acme &amp; Co" in page
    assert f"/{tenant}/advisories/{stem}.html" in _public(server, f"/{tenant}/advisories/").text

    # a second publish without a change is refused; a revision is a new version, out only once published
    r = c.post(f"/api/v1/cra/advisories/{adv['id']}/publish")
    assert r.status_code == 409 and "revise it first" in r.json()["message"]
    r = c.patch(f"/api/v1/cra/advisories/{adv['id']}", json={"summary": "More detail."})
    assert r.status_code == 400 and "change" in r.json()["message"]
    r = c.patch(f"/api/v1/cra/advisories/{adv['id']}", json={"summary": "More detail.", "change": "Summary extended."})
    assert r.status_code == 200 and r.json()["state"] == "revised", r.text
    assert r.json()["document"]["document"]["tracking"]["version"] == "2"
    assert _public(server, f"{base}/white/{path}").content == data  # still version 1
    r = c.post(f"/api/v1/cra/advisories/{adv['id']}/publish")
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    doc2 = _public(server, f"{base}/white/{path}").json()
    assert [h["number"] for h in doc2["document"]["tracking"]["revision_history"]] == ["1", "2"]
    assert doc2["document"]["tracking"]["revision_history"][1]["summary"] == "Summary extended."
    assert doc2["document"]["tracking"]["initial_release_date"] == t["initial_release_date"]
    assert schema_errors(doc2) == [] and mandatory_failures(doc2) == []
    # published bytes from the management API are the served ones
    got = c.get(f"/api/v1/cra/advisories/{adv['id']}/document")
    assert got.status_code == 200 and got.json() == doc2

    # audit
    actions = [e["action"] for e in c.get("/api/v1/audit", params={"action": "cra."}).json()]
    for action in ("cra.advisory.create", "cra.advisory.publish", "cra.advisory.revise", "cra.provider.set", "cra.provider.key"):
        assert action in actions

    # the Annex VII export holds the published advisory, byte for byte
    r = c.get("/api/v1/cra/export", params={"product": DEBIAN})
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        member = tar.extractfile(f"advisories/{pub['file']}")
        assert member is not None and json.loads(member.read()) == doc2
    assert c.get("/api/v1/cra/export", params={"product": DEBIAN}).content == r.content
    c.close()


def test_bad_input_changes_nothing(server: LiveServer, lab: Lab, checker: Checker) -> None:
    c, _ = _setup(server, lab, checker)
    viewer = c.post("/api/v1/tokens", json={"name": "ro", "user": "vera", "role": "viewer"}).json()["token"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"compatible": "no-such", "cves": [CVE]}, 404, "bulkhead cra product set"),
        ({"compatible": DEBIAN, "cves": ["not a cve"]}, 400, "not vulnerability ids"),
        ({"compatible": DEBIAN, "cves": ["CVE-2001-0001"]}, 422, "scan them first"),
        ({"compatible": DEBIAN, "cves": [CVE], "cvss": {CVE: "CVSS:3.1/AV:X"}}, 400, "not a valid CVSS vector"),
        ({"compatible": DEBIAN, "cves": [CVE], "cvss": {"CVE-2020-1": VECTOR}}, 400, "does not name"),
        ({"compatible": DEBIAN, "cves": []}, 422, "cves"),
    ]
    for body, status, message in cases:
        r = c.post("/api/v1/cra/advisories", json=body)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()) >= {"error", "message"} and message in r.json()["message"], r.text
    with server.client(viewer) as v:
        r = v.post("/api/v1/cra/advisories", json={"compatible": DEBIAN, "cves": [CVE]})
        assert r.status_code == 403
        assert v.patch("/api/v1/cra/provider", json={"contact": "a@b.example"}).status_code == 403
    assert c.get("/api/v1/cra/advisories").json() == []
    assert not [e for e in c.get("/api/v1/audit", params={"action": "cra.advisory"}).json()]
    r = c.patch("/api/v1/cra/provider", json={"contact": "not a contact"})
    assert r.status_code == 400 and "mailto" in r.json()["message"]
    assert c.patch("/api/v1/cra/provider", json={"policy": "http://insecure.example"}).status_code == 400
    assert c.get("/api/v1/cra/provider").json()["contact"] is None
    if shutil.which("gpg"):  # a key import that is no key: a 400 saying what to give, nothing stored for any host
        armour = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n"
        for bad, message in (("not a key", "ASCII-armoured OpenPGP secret key"), (armour, "the key cannot be imported")):
            r = c.put("/api/v1/cra/provider/key", json={"secret_key": bad})
            assert r.status_code == 400 and message in r.json()["message"], r.text
        assert c.get("/api/v1/cra/provider").json()["signing"]["fingerprint"] is None
    # the public side: unknown tenants and files are 404s with a message; no contact, no security.txt
    tenant = _tenant_name(c)
    for path in (
        "/no-such-tenant/.well-known/csaf/provider-metadata.json",
        f"/{tenant}/.well-known/csaf/white/2026/nothing.json",
        f"/{tenant}/.well-known/security.txt",
        "/.well-known/csaf/provider-metadata.json",  # no host is mapped on this server
    ):
        r = httpx.get(server.url + path)
        assert r.status_code == 404 and r.json()["message"], path
    assert httpx.get(server.url + f"/{tenant}/.well-known/csaf/white/2026/..%2Fx.json").status_code in (404, 422)
    with server.client(viewer) as v:
        assert v.get("/api/v1/cra/advisories").status_code == 200  # viewers read
    c.close()


def test_a_tenant_served_at_the_root_of_its_own_host(tmp_path: Path) -> None:
    """BULKHEAD_CSAF_HOSTS: the mapped Host gets the tenant's provider and security.txt at the root /.well-known/,
    with URLs on that host; another Host gets a 404 saying how to map it."""
    env = {
        "BULKHEAD_CSAF_HOSTS": "advisories.acme.example=acme",
        "BULKHEAD_SECURITY_CONTACT": "https://acme.example/report",
        "BULKHEAD_SECURITY_POLICY": "https://acme.example/policy",
        "BULKHEAD_PUBLIC_URL": "https://updates.example",
    }
    with live_server(tmp_path / "data", env) as srv:
        with srv.client(srv.admin) as a:
            assert a.post("/api/v1/tenants", json={"name": "acme"}).status_code == 201
        host = {"host": "advisories.acme.example"}
        meta = httpx.get(srv.url + "/.well-known/csaf/provider-metadata.json", headers=host)
        assert meta.status_code == 200, meta.text
        doc = meta.json()
        assert schema_errors(doc, "provider_json_schema.json") == []
        assert doc["canonical_url"] == "https://advisories.acme.example/.well-known/csaf/provider-metadata.json"
        assert doc["role"] == "csaf_provider"  # nothing published, nothing signed yet
        sec = httpx.get(srv.url + "/.well-known/security.txt", headers=host)
        assert sec.status_code == 200, sec.text
        fields = parse_security_txt(sec.text, "https://advisories.acme.example/.well-known/security.txt", dt.datetime.now(dt.UTC))
        assert fields["contact"] == ["https://acme.example/report"] and fields["policy"] == ["https://acme.example/policy"]
        assert fields["csaf"] == [doc["canonical_url"]]
        # the path form serves the same tenant, its URLs still on its own host
        assert httpx.get(srv.url + "/acme/.well-known/csaf/provider-metadata.json").json() == doc
        other = httpx.get(srv.url + "/.well-known/security.txt", headers={"host": "other.example"})
        assert other.status_code == 404 and "BULKHEAD_CSAF_HOSTS" in other.json()["message"]
