"""A release's SBOM exported by the server (CycloneDX 1.6, SPDX 2.3, SPDX 3.0.1), and SPDX 3.0.1 release SBOMs
attached: on SQLite and PostgreSQL, over the real API."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter

import pytest
from packageurl import PackageURL

from bulkhead.cra.components import read_sbom
from bulkhead.cra.model import Component
from bulkhead.osbuild.sbom import cyclonedx, parse_dpkg_status, spdx
from tests.conftest import SHARED
from tests.sbom_validators import validate
from tests.server.conftest import LiveServer
from tests.server.test_releases import GOOD, stored_artifacts

STATUS = (
    "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl (3.0.15-1~deb12u1)\n"
    "Version: 3.0.15-1~deb12u1\nMaintainer: Debian OpenSSL Team <x@debian.org>\n\n"
    "Package: rauc\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.8-2\n\n"
    "Package: bsdutils\nStatus: install ok installed\nArchitecture: amd64\nSource: util-linux (2.38.1-5+deb12u3)\n"
    "Version: 1:2.38.1-5+deb12u3\n"
)
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SPDX3 = SHARED / "yocto-spdx/spdx-3.0.1/vulnscout-core-image-minimal-qemux86-64/core-image-minimal-qemux86-64.rootfs.spdx.json"
MEDIA = {"cyclonedx": "application/vnd.cyclonedx+json", "spdx": "application/spdx+json", "spdx3": "application/spdx+json"}


def _key(c: Component) -> tuple[object, ...]:
    """What the export carries of a component, its purl canonical (CycloneDX writes `1:2.38` for `1%3A2.38`)."""
    purl = PackageURL.from_string(c.purl).to_string() if c.purl else None
    return (c.name, c.version, purl, c.cpes, c.source_name, c.source_version, c.supplier, c.hashes)


@pytest.mark.parametrize("fmt", ["cyclonedx", "spdx", "spdx3"])
def test_export_carries_the_release_and_its_components(server: LiveServer, fmt: str) -> None:
    attached = spdx(parse_dpkg_status(STATUS), "img", "1", WHEN)
    with server.client(server.tenant()) as c:
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        c.put(f"/api/v1/releases/{rel['id']}/sbom", json=attached).raise_for_status()
        r = c.get(f"/api/v1/releases/{rel['id']}/sbom/export", params={"format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(MEDIA[fmt]) and "attachment" in r.headers["content-disposition"]
    assert validate(fmt, r.text) == []
    back = read_sbom([r.json()])
    assert Counter(map(_key, back)) == Counter(map(_key, read_sbom([attached])))
    assert {c.supplier for c in back} == {"Debian OpenSSL Team <x@debian.org>", None} and len(back) == 3
    assert rel["sha256"] in r.text and rel["version"] in r.text and rel["compatible"] in r.text


def test_the_spdx_and_cyclonedx_sboms_of_one_image_export_each_component_once(server: LiveServer) -> None:
    """The reference image's two SBOMs spell an epoch's colon in a purl differently (`1%3A2.38`, `1:2.38`)."""
    pkgs = parse_dpkg_status(STATUS)
    with server.client(server.tenant()) as c:
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        c.put(f"/api/v1/releases/{rel['id']}/sbom", json=spdx(pkgs, "img", "1", WHEN)).raise_for_status()
        c.put(f"/api/v1/releases/{rel['id']}/sbom", json=cyclonedx(pkgs, "img", "1", WHEN)).raise_for_status()
        r = c.get(f"/api/v1/releases/{rel['id']}/sbom/export", params={"format": "spdx3"})
    assert r.status_code == 200, r.text
    assert sorted(c.name for c in read_sbom([r.json()])) == ["bsdutils", "libssl3", "rauc"]


@pytest.mark.skipif(not SPDX3.is_file(), reason="shared testdata not found")
def test_a_yocto_spdx3_sbom_is_attached_downloaded_and_exported(server: LiveServer) -> None:
    body = SPDX3.read_bytes()
    with server.client(server.tenant()) as c:
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        r = c.put(f"/api/v1/releases/{rel['id']}/sbom", content=body)
        assert r.status_code == 200, r.text
        assert (r.json()["format"], r.json()["spec_version"], r.json()["components"]) == ("spdx3", "3.0.1", 38)
        assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
        assert [s["format"] for s in c.get(f"/api/v1/releases/{rel['id']}").json()["sboms"]] == ["spdx3"]
        got = c.get(f"/api/v1/releases/{rel['id']}/sbom", params={"format": "spdx3"})
        assert got.content == body and got.headers["content-type"] == "application/spdx+json"
        cdx = c.get(f"/api/v1/releases/{rel['id']}/sbom/export", params={"format": "cyclonedx"})
    assert cdx.status_code == 200 and validate("cyclonedx", cdx.text) == []
    assert Counter(map(_key, read_sbom([cdx.json()]))) == Counter(map(_key, read_sbom([json.loads(body)])))


def test_bad_requests_get_clear_errors_and_viewers_may_export(server: LiveServer) -> None:
    admin, other = server.tenant(), server.tenant()
    with server.client(admin) as c:
        viewer = c.post("/api/v1/tokens", json={"name": "ro", "user": "vera", "role": "viewer"}).json()["token"]
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        url = f"/api/v1/releases/{rel['id']}/sbom/export"
        r = c.get(url, params={"format": "cyclonedx"})
        assert r.status_code == 404 and "has no SBOM" in r.json()["message"] and "bulkhead release sbom" in r.json()["message"]
        before = stored_artifacts(server)
        bad = {"@context": "https://spdx.org/rdf/3.0.0/spdx-context.jsonld", "@graph": []}
        r = c.put(f"/api/v1/releases/{rel['id']}/sbom", json=bad)
        assert r.status_code == 422 and "3.0.1" in r.json()["message"], r.text
        r = c.put(
            f"/api/v1/releases/{rel['id']}/sbom", json={**bad, "@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"}
        )
        assert r.status_code == 422 and "SpdxDocument" in r.json()["message"], r.text
        assert stored_artifacts(server) == before
        c.put(
            f"/api/v1/releases/{rel['id']}/sbom", json=cyclonedx(parse_dpkg_status(STATUS), "img", "1", WHEN)
        ).raise_for_status()
        r = c.get(url, params={"format": "swid"})
        assert r.status_code == 400 and r.json()["error"] == "invalid" and "cyclonedx, spdx, spdx3" in r.json()["message"]
        r = c.get("/api/v1/releases/999999/sbom/export", params={"format": "spdx"})
        assert r.status_code == 404 and set(r.json()) >= {"error", "message"}
    with server.client(viewer) as c:
        assert c.get(url, params={"format": "spdx3"}).status_code == 200
    with server.client(other) as c:
        assert c.get(url, params={"format": "spdx"}).status_code == 404
