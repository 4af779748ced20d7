"""Delta bundles on a live server: verified upload, the smallest artifact per device (agent API and DDI), the plan,
server-side builds only with the tenant's signing key, and cleanup with the release."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkhead.delta.bundle import create_delta_bundle
from bulkhead.lab.pki import DemoPki, make_pki
from bulkhead.rauc import load_keyring
from tests.delta.conftest import ext4, full_bundle
from tests.seaweed import stored_objects
from tests.server.conftest import LiveServer

ALL_STORES = True  # the tests taking `server` run on the S3 store too (tests/server/conftest.py)


@dataclass
class Bundles:
    pki: DemoPki
    full: dict[str, Path]  # version -> full bundle
    delta12: Path  # 1 -> 2
    delta13: Path  # 1 -> 3: version 3 is new random data, so the delta is not smaller than the full bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    work = tmp_path_factory.mktemp("deltas")
    pki = make_pki(work / "pki")
    v1, v2 = ext4(work, 1), ext4(work, 2)
    v3 = work / "rootfs-3.ext4"
    v3.write_bytes(os.urandom(v1.stat().st_size))
    full = {v: full_bundle(work, img, v, pki.cert, pki.key) for v, img in (("1", v1), ("2", v2), ("3", v3))}
    keyring = load_keyring(pki.ca.read_bytes())
    d12, d13 = work / "delta-1-2.raucb", work / "delta-1-3.raucb"
    cert, key = pki.cert.read_bytes(), pki.key.read_bytes()
    create_delta_bundle(full["1"], full["2"], d12, cert, key, keyring, fmt="plain")
    create_delta_bundle(full["1"], full["3"], d13, cert, key, keyring, fmt="plain")
    return Bundles(pki, full, d12, d13)


def stored(server: LiveServer) -> set[str]:
    if server.s3 is not None:
        return stored_objects(server.s3)
    root = server.data_dir / "artifacts"
    return {p.name for p in root.glob("??/*")} | {p.name for p in (root / ".incoming").iterdir()}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tenant(server: LiveServer, b: Bundles) -> tuple[httpx.Client, dict[str, int]]:
    c = server.client(server.tenant(ca=b.pki.ca))
    ids = {}
    for v, path in b.full.items():
        r = c.post("/api/v1/releases", content=path.read_bytes())
        assert r.status_code == 201, r.text
        ids[v] = r.json()["id"]
    return c, ids


def _device(c: httpx.Client, os_version: str | None) -> dict[str, str]:
    """An enrolled device that reported running `os_version` (None: it has not reported yet)."""
    name = f"d-{uuid.uuid4().hex[:8]}"
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": name}).json()
    r = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": name, "compatible": "delta-lab"})
    assert r.status_code == 201, r.text
    auth = {"authorization": f"Bearer {r.json()['credential']}", "x-name": name}
    if os_version is not None:
        rep = c.post("/device/v1/reports", json={"events": [], "inventory": {"os_version": os_version}}, headers=auth)
        assert rep.status_code == 200, rep.text
    return auth


def _state_release(c: httpx.Client, auth: dict[str, str]) -> dict[str, Any]:
    r = c.get("/device/v1/state", headers=auth)
    assert r.status_code == 200, r.text
    rel: dict[str, Any] = r.json()["desired"]["release"]
    return rel


def test_delta_upload_is_verified_and_matched_to_its_source(server: LiveServer, bundles: Bundles) -> None:
    c, ids = _tenant(server, bundles)
    before = stored(server)
    # refused, and nothing stored: a full bundle, a delta for another release, an untrusted signer
    r = c.post(f"/api/v1/releases/{ids['2']}/deltas", content=bundles.full["2"].read_bytes())
    assert r.status_code == 422 and "this is a full bundle" in r.json()["message"]
    r = c.post(f"/api/v1/releases/{ids['3']}/deltas", content=bundles.delta12.read_bytes())
    assert r.status_code == 422 and "upload it to the release it makes" in r.json()["message"], r.text
    damaged = bytearray(bundles.delta12.read_bytes())
    damaged[len(damaged) // 3] ^= 1
    r = c.post(f"/api/v1/releases/{ids['2']}/deltas", content=bytes(damaged))
    assert r.status_code == 422 and "delta bundle rejected" in r.json()["message"]
    assert stored(server) == before
    assert c.get(f"/api/v1/releases/{ids['2']}/deltas").json() == []

    r = c.post(f"/api/v1/releases/{ids['2']}/deltas", content=bundles.delta12.read_bytes())
    assert r.status_code == 201, r.text
    d = r.json()
    assert (d["source_version"], d["source_release_id"], d["status"], d["origin"]) == ("1", ids["1"], "ready", "upload")
    assert d["sha256"] == _sha(bundles.delta12) and d["ratio"] < 0.25
    dup = c.post(f"/api/v1/releases/{ids['2']}/deltas", content=bundles.delta12.read_bytes())
    assert dup.status_code == 409 and "already has a delta from 1" in dup.json()["message"]
    assert [x["id"] for x in c.get(f"/api/v1/releases/{ids['2']}/deltas").json()] == [d["id"]]

    # a delta whose source release is not on the server cannot be matched to devices
    c2 = server.client(server.tenant(ca=bundles.pki.ca))
    rel2 = c2.post("/api/v1/releases", content=bundles.full["2"].read_bytes()).json()
    r = c2.post(f"/api/v1/releases/{rel2['id']}/deltas", content=bundles.delta12.read_bytes())
    assert r.status_code == 422 and "upload the source release first" in r.json()["message"]


def test_each_device_gets_the_smallest_artifact_for_what_it_runs(server: LiveServer, bundles: Bundles) -> None:
    c, ids = _tenant(server, bundles)
    assert c.post(f"/api/v1/releases/{ids['2']}/deltas", content=bundles.delta12.read_bytes()).status_code == 201
    assert c.post(f"/api/v1/releases/{ids['3']}/deltas", content=bundles.delta13.read_bytes()).status_code == 201
    on1, on3, silent = _device(c, "1"), _device(c, "3"), _device(c, None)
    for auth in (on1, on3, silent):
        r = c.put(f"/api/v1/devices/{auth['x-name']}/desired-release", json={"release_id": ids["2"], "allow_downgrade": True})
        assert r.status_code == 200, r.text

    rel = _state_release(c, on1)
    delta = rel["delta"]
    assert delta["from_version"] == "1" and delta["sha256"] == _sha(bundles.delta12)
    assert delta["size"] == bundles.delta12.stat().st_size < rel["size"] / 4
    got = c.get(delta["url"].removeprefix(server.url), headers=on1)
    assert got.status_code == 200 and got.content == bundles.delta12.read_bytes()
    part = httpx.get(delta["signed_url"], headers={"range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == bundles.delta12.read_bytes()[:100]
    # the full bundle stays available to the same device (its fallback)
    assert c.get(rel["url"].removeprefix(server.url), headers=on1).content == bundles.full["2"].read_bytes()

    assert "delta" not in _state_release(c, on3)  # runs another version: the full bundle
    assert "delta" not in _state_release(c, silent)  # has not said what it runs: the full bundle
    # another tenant's device cannot fetch this delta
    other = _device(server.client(server.tenant(ca=bundles.pki.ca)), "1")
    assert c.get(delta["url"].removeprefix(server.url), headers=other).status_code == 404

    # a delta that is not clearly smaller than the full bundle is not offered
    assert c.put(f"/api/v1/devices/{on1['x-name']}/desired-release", json={"release_id": ids["3"]}).status_code == 200
    rel3 = _state_release(c, on1)
    assert rel3["version"] == "3" and "delta" not in rel3

    # the device reports it now runs 2: nothing to patch from any more
    assert (
        c.put(
            f"/api/v1/devices/{on1['x-name']}/desired-release", json={"release_id": ids["2"], "allow_downgrade": True}
        ).status_code
        == 200
    )
    assert "delta" in _state_release(c, on1)
    c.post("/device/v1/reports", json={"events": [], "inventory": {"os_version": "2"}}, headers=on1).raise_for_status()
    assert "delta" not in _state_release(c, on1)

    plan = c.get(f"/api/v1/releases/{ids['2']}/delta-plan").json()
    assert plan["devices_on_release"] == 1
    by_version = {s["version"]: s for s in plan["sources"]}
    assert by_version["3"]["devices"] == 1 and by_version["3"]["delta"] is None and "build it" in by_version["3"]["advice"]
    assert by_version[None]["devices"] == 1 and "not reported" in by_version[None]["advice"]
    _device(c, "1")
    plan3 = c.get(f"/api/v1/releases/{ids['3']}/delta-plan").json()
    assert {s["version"]: s["advice"] for s in plan3["sources"]}["1"].startswith("delta not clearly smaller")


def test_ddi_offers_the_delta_for_the_installed_version(server: LiveServer, bundles: Bundles) -> None:
    c, ids = _tenant(server, bundles)
    assert c.post(f"/api/v1/releases/{ids['2']}/deltas", content=bundles.delta12.read_bytes()).status_code == 201
    tenant = c.get("/api/v1/tenant").json()["name"]
    name = f"ctl-{uuid.uuid4().hex[:6]}"
    dev = c.post("/api/v1/devices", json={"name": name, "compatible": "delta-lab", "groups": ["ddi-delta"]}).json()
    ddi = httpx.Client(headers={"authorization": f"TargetToken {dev['target_token']}"}, timeout=30)
    base = f"{server.url}/{tenant}/controller/v1/{name}"
    assert ddi.put(f"{base}/installedBase", json={"name": "os", "version": "1"}).status_code in (200, 201, 204)
    body = {"name": f"r-{uuid.uuid4().hex[:6]}", "release_id": ids["2"], "target": {"groups": ["ddi-delta"]}, "type": "forced"}
    assert c.post("/api/v1/rollouts", json=body).status_code == 201
    href = None
    deadline = time.monotonic() + 20
    while href is None and time.monotonic() < deadline:
        href = ddi.get(base).json().get("_links", {}).get("deploymentBase", {}).get("href")
        time.sleep(0.1)
    assert href, "no deployment offered"
    art = ddi.get(href).json()["deployment"]["chunks"][0]["artifacts"][0]
    blob = bundles.delta12.read_bytes()
    assert art["filename"] == "delta-lab-2-delta-from-1.raucb" and art["size"] == len(blob)
    assert art["hashes"] == {
        "sha1": hashlib.sha1(blob).hexdigest(),
        "md5": hashlib.md5(blob).hexdigest(),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    got = ddi.get(art["_links"]["download"]["href"])
    assert got.status_code == 200 and got.content == blob
    md5 = ddi.get(art["_links"]["md5sum"]["href"]).text
    assert md5 == f"{hashlib.md5(blob).hexdigest()}  delta-lab-2-delta-from-1.raucb\n"
    # the full bundle's name still resolves for this device (a client that wants it)
    full = ddi.get(href.split("/deploymentBase/")[0] + f"/softwaremodules/{ids['2']}/artifacts/delta-lab-2.raucb")
    assert full.status_code == 200 and full.content == bundles.full["2"].read_bytes()


def test_server_builds_deltas_only_with_the_tenants_signing_key(server: LiveServer, bundles: Bundles, tmp_path: Path) -> None:
    c, ids = _tenant(server, bundles)
    r = c.post(f"/api/v1/releases/{ids['2']}/deltas/build", json={"source_version": "1"})
    assert r.status_code == 409 and "holds no signing key" in r.json()["message"]
    assert c.get(f"/api/v1/releases/{ids['2']}/deltas").json() == []
    assert c.get("/api/v1/delta-signing").json()["server_signing"] is False

    # a certificate the keyring does not trust, or a key of another certificate, is refused
    stranger = make_pki(tmp_path / "other", org="Someone Else")
    cert, key = bundles.pki.cert.read_text(), bundles.pki.key.read_text()
    r = c.put("/api/v1/delta-signing", json={"cert_pem": stranger.cert.read_text(), "key_pem": stranger.key.read_text()})
    assert r.status_code == 400 and "keyring" in r.json()["message"], r.text
    r = c.put("/api/v1/delta-signing", json={"cert_pem": cert, "key_pem": stranger.key.read_text()})
    assert r.status_code == 400 and "does not belong to the certificate" in r.json()["message"]
    assert c.get("/api/v1/delta-signing").json()["server_signing"] is False

    r = c.put("/api/v1/delta-signing", json={"cert_pem": cert, "key_pem": key})
    assert r.status_code == 200 and r.json()["server_signing"] is True and "Bulkhead Demo" in r.json()["subject"]
    r = c.post(f"/api/v1/releases/{ids['2']}/deltas/build", json={"source_version": "1"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "building" and r.json()["origin"] == "server" and "signs it with" in r.json()["message"]
    missing = c.post(f"/api/v1/releases/{ids['2']}/deltas/build", json={"source_version": "9"})
    assert missing.status_code == 404
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        [d] = c.get(f"/api/v1/releases/{ids['2']}/deltas").json()
        if d["status"] != "building":
            break
        time.sleep(0.5)
    assert d["status"] == "ready", d
    assert d["origin"] == "server" and d["source_version"] == "1" and d["ratio"] < 0.25
    on1 = _device(c, "1")
    c.put(
        f"/api/v1/devices/{on1['x-name']}/desired-release", json={"release_id": ids["2"], "allow_downgrade": True}
    ).raise_for_status()
    assert _state_release(c, on1)["delta"]["sha256"] == d["sha256"]

    assert c.delete("/api/v1/delta-signing").json()["server_signing"] is False
    r = c.post(f"/api/v1/releases/{ids['3']}/deltas/build", json={"source_version": "1"})
    assert r.status_code == 409


def test_deleting_a_release_removes_its_deltas_and_their_files(server: LiveServer, bundles: Bundles, tmp_path: Path) -> None:
    c, ids = _tenant(server, bundles)
    own = tmp_path / "delta.raucb"  # signed afresh, so no other test's tenant stores the same file
    keyring = load_keyring(bundles.pki.ca.read_bytes())
    pem = bundles.pki.cert.read_bytes(), bundles.pki.key.read_bytes()
    create_delta_bundle(bundles.full["1"], bundles.full["2"], own, *pem, keyring, fmt="plain")
    d = c.post(f"/api/v1/releases/{ids['2']}/deltas", content=own.read_bytes()).json()
    assert d["sha256"] in stored(server)
    assert c.delete(f"/api/v1/releases/{ids['1']}").status_code == 204  # the source release
    assert c.get(f"/api/v1/releases/{ids['2']}/deltas").json() == []
    assert d["sha256"] not in stored(server)
    d2 = c.post(f"/api/v1/releases/{ids['3']}/deltas", content=bundles.delta13.read_bytes())
    assert d2.status_code == 422  # its source (1) is gone
