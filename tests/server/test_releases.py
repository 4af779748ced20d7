"""Release upload, verification, listing and deletion against a live server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkhead.lab.pki import DemoPki, make_pki
from tests.conftest import RAUC_DATA
from tests.seaweed import stored_objects
from tests.server.conftest import LiveServer
from tests.swu.conftest import signed_swu

ALL_STORES = True  # the tests taking `server` run on the S3 store too (tests/server/conftest.py)

GOOD = RAUC_DATA / "good-verity-bundle.raucb"


def stored_artifacts(server: LiveServer) -> set[str]:
    if server.s3 is not None:
        return stored_objects(server.s3)
    root = server.data_dir / "artifacts"
    return {p.name for p in root.glob("??/*")} | {p.name for p in (root / ".incoming").iterdir()}


def test_upload_good_bundle(server: LiveServer) -> None:
    token = server.tenant()
    with server.client(token) as c:
        r = c.post("/api/v1/releases", content=GOOD.read_bytes())
        assert r.status_code == 201, r.text
        rel = r.json()
        assert (rel["compatible"], rel["version"], rel["format"]) == ("Test Config", "2011.03-2", "verity")
        assert rel["signer"] == "O = Test Org, CN = Test Org Release-1"
        assert [i["filename"] for i in rel["images"]] == ["rootfs.img", "appfs.img"]
        assert c.get(f"/api/v1/releases/{rel['id']}").json()["sha256"] == rel["sha256"]
        assert [x["id"] for x in c.get("/api/v1/releases").json()] == [rel["id"]]


@pytest.mark.parametrize(
    "body,status,message",
    [
        ((RAUC_DATA / "invalid-sig-bundle.raucb").read_bytes(), 422, "signature verification failed"),
        ((RAUC_DATA / "good-verity-bundle.raucb").read_bytes()[:20000], 422, "bundle rejected"),
        (b"hello, this is not a bundle at all", 422, "not a RAUC bundle"),
        (b"", 400, "empty upload"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(server: LiveServer, body: bytes, status: int, message: str) -> None:
    token = server.tenant()
    before = stored_artifacts(server)
    with server.client(token) as c:
        r = c.post("/api/v1/releases", content=body)
        assert r.status_code == status, r.text
        assert message in r.json()["message"]
        assert c.get("/api/v1/releases").json() == []
    assert stored_artifacts(server) == before


def test_untrusted_signer_is_refused(server: LiveServer) -> None:
    token = server.tenant(keyring=False)
    with server.client(token) as c:
        c.put("/api/v1/keyring", json={"pem": (RAUC_DATA / "openssl-ca/dev-only-ca.pem").read_text()}).raise_for_status()
        r = c.post("/api/v1/releases", content=GOOD.read_bytes())
        assert r.status_code == 422
        assert "does not chain to a trust anchor" in r.json()["message"]


def test_no_keyring_gives_a_clear_error(server: LiveServer) -> None:
    token = server.tenant(keyring=False)
    with server.client(token) as c:
        r = c.post("/api/v1/releases", content=GOOD.read_bytes())
        assert r.status_code == 400 and "keyring set" in r.json()["message"]


def test_duplicate_version_is_refused(server: LiveServer) -> None:
    token = server.tenant()
    with server.client(token) as c:
        assert c.post("/api/v1/releases", content=GOOD.read_bytes()).status_code == 201
        r = c.post("/api/v1/releases", content=GOOD.read_bytes())
        assert r.status_code == 409 and "already exists" in r.json()["message"]
        assert len(c.get("/api/v1/releases").json()) == 1


def test_unknown_manifest_key_is_refused(server: LiveServer, tmp_path: Path) -> None:
    from bulkhead.rauc import create_bundle

    ca = RAUC_DATA / "openssl-ca"
    content = tmp_path / "c"
    content.mkdir()
    (content / "rootfs.img").write_bytes(b"x" * 8192)
    (content / "manifest.raucm").write_text(
        "[update]\ncompatible=Test Config\nversion=9\n\n[image.rootfs]\nfilename=rootfs.img\n"
    )
    out = tmp_path / "b.raucb"
    create_bundle(content, out, (ca / "rel/release-1.cert.pem").read_bytes(), (ca / "rel/private/release-1.pem").read_bytes())
    # re-sign a manifest with an unknown key: signature valid, manifest invalid
    from bulkhead.rauc import BytesReader, open_bundle
    from bulkhead.rauc.cms import sign_cms
    from bulkhead.rauc.writer import load_signer

    data = out.read_bytes()
    b = open_bundle(BytesReader(data))
    cert, key, _ = load_signer((ca / "rel/release-1.cert.pem").read_bytes(), (ca / "rel/private/release-1.pem").read_bytes())
    bad_manifest = b.cms.encapsulated.replace(b"[update]\n", b"[update]\nflavour=vanilla\n")  # type: ignore[union-attr]
    cms = sign_cms(bad_manifest, cert, key)
    bad = data[: b.payload_size] + cms + len(cms).to_bytes(8, "big")
    token = server.tenant()
    with server.client(token) as c:
        r = c.post("/api/v1/releases", content=bad)
        assert r.status_code == 422
        assert "unknown key 'flavour'" in r.json()["message"] and "line 2" in r.json()["message"]


def test_roles_and_tenant_isolation(server: LiveServer) -> None:
    admin = server.tenant()
    other = server.tenant()
    with server.client(admin) as c:
        viewer = c.post("/api/v1/tokens", json={"name": "ro", "user": "vera", "role": "viewer"}).json()["token"]
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
    with server.client(viewer) as c:
        assert c.get("/api/v1/releases").status_code == 200
        r = c.delete(f"/api/v1/releases/{rel['id']}")
        assert r.status_code == 403 and "operator" in r.json()["message"]
    with server.client(other) as c:
        assert c.get(f"/api/v1/releases/{rel['id']}").status_code == 404
        assert c.get("/api/v1/releases").json() == []
    with server.client() as c:
        assert c.get("/api/v1/releases").status_code == 401


def test_delete_refused_while_a_device_needs_it(server: LiveServer) -> None:
    token = server.tenant()
    with server.client(token) as c:
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
        c.post(
            "/device/v1/enroll", json={"bootstrap_token": boot, "name": "dev1", "compatible": "Test Config"}
        ).raise_for_status()
        c.put("/api/v1/devices/dev1/desired-release", json={"release_id": rel["id"]}).raise_for_status()
        r = c.delete(f"/api/v1/releases/{rel['id']}")
        assert r.status_code == 409 and "desired release of 1 device" in r.json()["message"]
        c.put("/api/v1/devices/dev1/desired-release", json={"release_id": None}).raise_for_status()
        assert c.delete(f"/api/v1/releases/{rel['id']}").status_code == 204
        assert c.get(f"/api/v1/releases/{rel['id']}").status_code == 404


def test_upload_size_limit(server: LiveServer) -> None:
    token = server.tenant()
    with server.client(token) as c:
        r = c.post("/api/v1/releases", content=b"\0" * (64 * 1024 * 1024 + 1))
        assert r.status_code == 413 and "BULKHEAD_MAX_UPLOAD_BYTES" in r.json()["message"]


def test_openapi_and_docs(server: LiveServer) -> None:
    with server.client() as c:
        spec = c.get("/openapi.json").json()
        assert "/api/v1/releases" in spec["paths"]
        assert c.get("/docs").status_code == 200


def _swu_tenant(server: LiveServer, tmp_path: Path) -> tuple[str, DemoPki, Path]:
    pki = make_pki(tmp_path / "pki")
    payload = tmp_path / "app.bin"
    payload.write_bytes(b"app " * 4096)
    return server.tenant(ca=pki.ca), pki, signed_swu(tmp_path / "u.swu", pki, "3.0", {"app.bin": payload}, Path("/opt"))


def test_upload_swupdate_image_for_a_compatible(server: LiveServer, tmp_path: Path) -> None:
    token, _, swu = _swu_tenant(server, tmp_path)
    with server.client(token) as c:
        r = c.post("/api/v1/releases", params={"compatible": "board-x"}, content=swu.read_bytes())
        assert r.status_code == 201, r.text
        rel = r.json()
        assert (rel["compatible"], rel["version"], rel["format"]) == ("board-x", "3.0", "swu")
        assert rel["signer"] == "O = Bulkhead Demo, CN = Bulkhead Demo Release Signer"
        again = c.post("/api/v1/releases", params={"compatible": "board-x"}, content=swu.read_bytes())
        assert again.status_code == 409 and "already exists" in again.json()["message"]


def test_bad_swupdate_uploads_are_refused_and_nothing_is_stored(server: LiveServer, tmp_path: Path) -> None:
    token, _, swu = _swu_tenant(server, tmp_path)
    data = swu.read_bytes()
    tampered = data.replace(b"app " * 64, b"bad " * 64, 1)
    before = stored_artifacts(server)
    with server.client(token) as c:
        cases = [
            ({}, data, 400, "pass --compatible"),
            ({"compatible": "board-x"}, tampered, 422, "does not match sw-description"),
            ({"compatible": "board-x"}, data[:3000], 422, "SWUpdate image rejected"),
            ({"compatible": "board-x"}, GOOD.read_bytes(), 400, "only for SWUpdate images"),
        ]
        for params, body, status, message in cases:
            r = c.post("/api/v1/releases", params=params, content=body)
            assert r.status_code == status, r.text
            assert message in r.json()["message"]
        assert c.get("/api/v1/releases").json() == []
    assert stored_artifacts(server) == before
