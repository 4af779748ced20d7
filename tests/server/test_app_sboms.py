"""CycloneDX SBOMs of app versions over the API: given with the version or attached later, replaced, downloaded,
shown with the version, refused (nothing stored) when not a readable CycloneDX 1.4-1.6 document or too large."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.server.conftest import LiveServer
from tests.server.test_releases import stored_artifacts

DATA = Path(__file__).parent / "data"
SHOP = DATA / "app-shop-1.0.cdx-1.5.json"  # derived, see data/README.md
CONTAINERS = [{"name": "web", "image": "registry.example:5000/shop@sha256:" + "a" * 64}]


def shop(**changes: str) -> dict[str, Any]:
    """The shop SBOM with some components at other versions (name -> version)."""
    doc: dict[str, Any] = json.loads(SHOP.read_text())
    for comp in doc["components"]:
        if comp["name"] in changes:
            v = changes[comp["name"]]
            comp["purl"] = comp["purl"].rsplit("@", 1)[0] + "@" + v
            comp["bom-ref"], comp["version"] = comp["purl"], v
    return doc


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_given_with_the_version_attached_later_replaced_downloaded_and_deleted(server: LiveServer) -> None:
    with server.client(server.tenant()) as c:
        r = c.post("/api/v1/apps", json={"name": "shop", "version": "1.0", "containers": CONTAINERS, "sbom": shop()})
        assert r.status_code == 201, r.text
        sbom = r.json()["sbom"]
        assert (sbom["format"], sbom["spec_version"], sbom["components"]) == ("cyclonedx", "1.5", 4)
        got = c.get("/api/v1/apps/shop/1.0/sbom")
        assert got.status_code == 200 and got.headers["content-type"] == "application/vnd.cyclonedx+json"
        assert json.loads(got.content) == shop() and hashlib.sha256(got.content).hexdigest() == sbom["sha256"]

        # a version without an SBOM gets one later; the list shows which versions have one
        assert c.post("/api/v1/apps", json={"name": "shop", "version": "1.1", "containers": CONTAINERS}).json()["sbom"] is None
        assert c.get("/api/v1/apps/shop/1.1/sbom").status_code == 404
        v11 = _bytes(shop(requests="2.31.0", lodash="4.17.21"))
        r = c.put("/api/v1/apps/shop/1.1/sbom", content=v11)
        assert r.status_code == 200, r.text
        assert r.json()["sha256"] == hashlib.sha256(v11).hexdigest()
        listed = {a["version"]: a["sbom"] for a in c.get("/api/v1/apps", params={"name": "shop"}).json()}
        assert listed["1.0"]["sha256"] == sbom["sha256"] and listed["1.1"]["sha256"] == hashlib.sha256(v11).hexdigest()
        assert c.get("/api/v1/apps/shop/1.1/sbom").content == v11

        # a new SBOM replaces the old one, whose bytes leave the store; changing the containers keeps it
        newer = _bytes({**shop(requests="2.32.3"), "serialNumber": "urn:uuid:0b3f2a52-8f2e-4c55-9d7b-1f0e7d9c2a11"})
        assert c.put("/api/v1/apps/shop/1.1/sbom", content=newer).status_code == 200
        assert hashlib.sha256(v11).hexdigest() not in stored_artifacts(server)
        r = c.put("/api/v1/apps/shop/1.1", json={"containers": CONTAINERS})
        assert r.json()["sbom"]["sha256"] == hashlib.sha256(newer).hexdigest()

        # deleting the version deletes its SBOM
        assert c.delete("/api/v1/apps/shop/1.1").status_code == 204
        assert hashlib.sha256(newer).hexdigest() not in stored_artifacts(server)
        assert sbom["sha256"] in stored_artifacts(server)


def test_bad_or_oversized_sboms_are_refused_and_nothing_is_stored(server: LiveServer) -> None:
    with server.client(server.tenant()) as c:
        assert c.post("/api/v1/apps", json={"name": "shop", "version": "1.0", "containers": CONTAINERS}).status_code == 201
        spdx = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "x", "documentNamespace": "urn:x",
                "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: t"]}, "packages": []}  # fmt: skip
        bad_components = {**shop(), "components": [{"type": "library", "version": "1"}]}
        before = stored_artifacts(server)
        for body, status, message in (
            (b"{not json", 422, "not JSON"),
            (b'{"name": "a list of parts"}', 422, "not an SBOM"),
            (_bytes(spdx), 422, "CycloneDX 1.4-1.6"),
            (_bytes({**shop(), "specVersion": "1.3"}), 422, "not supported"),
            (_bytes(bad_components), 422, "each with a name"),
            (b"", 400, "empty upload"),
            (b" " * (16 * 1024 * 1024 + 1), 413, "limit"),
        ):
            r = c.put("/api/v1/apps/shop/1.0/sbom", content=body)
            assert r.status_code == status and message in r.json()["message"], (message, r.text)
            assert set(r.json()) >= {"error", "message"}
        assert c.put("/api/v1/apps/shop/9.9/sbom", content=SHOP.read_bytes()).status_code == 404
        assert stored_artifacts(server) == before
        assert c.get("/api/v1/apps/shop/1.0/sbom").status_code == 404

        # a new version with a bad SBOM is not created at all
        r = c.post("/api/v1/apps", json={"name": "shop", "version": "2.0", "containers": CONTAINERS, "sbom": spdx})
        assert r.status_code == 422 and "CycloneDX" in r.json()["message"]
        assert [a["version"] for a in c.get("/api/v1/apps", params={"name": "shop"}).json()] == ["1.0"]
        assert stored_artifacts(server) == before


def test_viewers_read_operators_attach_other_tenants_see_nothing(server: LiveServer) -> None:
    admin, other = server.tenant(), server.tenant()
    with server.client(admin) as c:
        viewer = c.post("/api/v1/tokens", json={"name": "ro", "user": "vera", "role": "viewer"}).json()["token"]
        c.post("/api/v1/apps", json={"name": "shop", "version": "1.0", "containers": CONTAINERS, "sbom": shop()})
    with server.client(viewer) as c:
        assert c.get("/api/v1/apps/shop/1.0/sbom").status_code == 200
        r = c.put("/api/v1/apps/shop/1.0/sbom", content=SHOP.read_bytes())
        assert r.status_code == 403 and "operator" in r.json()["message"]
    with server.client(other) as c:
        assert c.get("/api/v1/apps/shop/1.0/sbom").status_code == 404
