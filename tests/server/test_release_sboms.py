"""SBOMs attached to releases over the API: one per format, replaced, downloaded, refused when not an SBOM."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from bulkhead.osbuild.sbom import cyclonedx, parse_dpkg_status, spdx
from tests.server.conftest import LiveServer
from tests.server.test_releases import GOOD, stored_artifacts

STATUS = "Package: rauc\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.8-2\n"
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def docs(version: str) -> tuple[bytes, bytes]:
    pkgs = parse_dpkg_status(STATUS)
    return json.dumps(spdx(pkgs, "img", version, WHEN)).encode(), json.dumps(cyclonedx(pkgs, "img", version, WHEN)).encode()


def test_attach_list_download_replace_and_delete(server: LiveServer) -> None:
    token = server.tenant()
    spdx1, cdx1 = docs("1")
    with server.client(token) as c:
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        r = c.put(f"/api/v1/releases/{rel['id']}/sbom", content=spdx1)
        assert r.status_code == 200, r.text
        assert (r.json()["format"], r.json()["spec_version"], r.json()["components"]) == ("spdx", "SPDX-2.3", 2)
        assert r.json()["sha256"] == hashlib.sha256(spdx1).hexdigest()
        assert c.put(f"/api/v1/releases/{rel['id']}/sbom", content=cdx1).json()["format"] == "cyclonedx"
        shown = c.get(f"/api/v1/releases/{rel['id']}").json()
        assert [s["format"] for s in shown["sboms"]] == ["cyclonedx", "spdx"]
        assert [s["format"] for s in c.get("/api/v1/releases").json()[0]["sboms"]] == ["cyclonedx", "spdx"]

        got = c.get(f"/api/v1/releases/{rel['id']}/sbom")  # SPDX by default
        assert got.content == spdx1 and got.headers["content-type"] == "application/spdx+json"
        got = c.get(f"/api/v1/releases/{rel['id']}/sbom", params={"format": "cyclonedx"})
        assert got.content == cdx1 and got.headers["content-type"] == "application/vnd.cyclonedx+json"

        spdx2, _ = docs("2")  # a new SPDX replaces the old one, whose bytes leave the store
        assert c.put(f"/api/v1/releases/{rel['id']}/sbom", content=spdx2).status_code == 200
        assert c.get(f"/api/v1/releases/{rel['id']}/sbom").content == spdx2
        assert hashlib.sha256(spdx1).hexdigest() not in stored_artifacts(server)

        assert c.delete(f"/api/v1/releases/{rel['id']}").status_code == 204
    left = stored_artifacts(server)
    assert hashlib.sha256(spdx2).hexdigest() not in left and hashlib.sha256(cdx1).hexdigest() not in left


def test_bad_sboms_are_refused_and_nothing_is_stored(server: LiveServer) -> None:
    token = server.tenant()
    with server.client(token) as c:
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        before = stored_artifacts(server)
        for body, status, message in (
            (b"{not json", 422, "not JSON"),
            (b'{"name": "a list of parts"}', 422, "not an SBOM"),
            (json.dumps({"spdxVersion": "SPDX-3.0"}).encode(), 422, "not supported"),
            (b"", 400, "empty upload"),
        ):
            r = c.put(f"/api/v1/releases/{rel['id']}/sbom", content=body)
            assert r.status_code == status and message in r.json()["message"], r.text
        assert stored_artifacts(server) == before
        assert c.get(f"/api/v1/releases/{rel['id']}").json()["sboms"] == []
        r = c.get(f"/api/v1/releases/{rel['id']}/sbom")
        assert r.status_code == 404 and "has no SBOM" in r.json()["message"]
        assert c.get(f"/api/v1/releases/{rel['id']}/sbom", params={"format": "swid"}).status_code == 400
        assert c.put("/api/v1/releases/999999/sbom", content=docs("1")[0]).status_code == 404


def test_viewers_read_sboms_and_other_tenants_see_nothing(server: LiveServer) -> None:
    admin, other = server.tenant(), server.tenant()
    with server.client(admin) as c:
        viewer = c.post("/api/v1/tokens", json={"name": "ro", "user": "vera", "role": "viewer"}).json()["token"]
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        c.put(f"/api/v1/releases/{rel['id']}/sbom", content=docs("1")[0]).raise_for_status()
    with server.client(viewer) as c:
        assert c.get(f"/api/v1/releases/{rel['id']}/sbom").status_code == 200
        r = c.put(f"/api/v1/releases/{rel['id']}/sbom", content=docs("2")[0])
        assert r.status_code == 403 and "operator" in r.json()["message"]
    with server.client(other) as c:
        assert c.get(f"/api/v1/releases/{rel['id']}/sbom").status_code == 404
