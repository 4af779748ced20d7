"""With two server processes, a reset or deleted device's credential and its signed URLs, a disabled device, and a
revoked API token are refused by every process within a second (the change feed carries device changes; each
process caches credentials and epochs; users' tokens are cached for half a second)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import RAUC_DATA
from tests.live import LiveServer, live_server

ROUNDS = 20  # new connections each: both workers answer some


def _state(url: str, credential: str) -> httpx.Response:
    with httpx.Client(base_url=url) as c:  # a new connection each time: either worker may answer
        return c.get("/device/v1/state", headers={"authorization": f"Bearer {credential}"})


def _fetch(signed: str) -> int:
    with httpx.Client() as c:
        return c.get(signed, headers={"range": "bytes=0-3"}).status_code


def _warm(srv: LiveServer, credential: str) -> str:
    """Poll and download through every worker so that each caches the credential and the URL's epoch."""
    signed = ""
    for _ in range(ROUNDS):
        r = _state(srv.url, credential)
        assert r.status_code == 200, r.text
        signed = r.json()["desired"]["release"]["signed_url"]
    for _ in range(ROUNDS):
        assert _fetch(signed) == 206
    return signed


def _refused_everywhere(srv: LiveServer, credential: str, signed: str, status: int = 401) -> None:
    for _ in range(ROUNDS):
        r = _state(srv.url, credential)
        assert r.status_code == status, r.text
        assert _fetch(signed) == 403


def test_reset_and_deleted_devices_are_refused_by_every_worker_within_a_second(tmp_path: Path) -> None:
    with live_server(tmp_path / "srv", workers=2) as srv, srv.client(srv.tenant()) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
        creds = {}
        for name in ("gone", "reset", "off"):
            r = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": name, "compatible": "Test Config"})
            creds[name] = r.json()["credential"]
        rel = c.post("/api/v1/releases", content=(RAUC_DATA / "good-verity-bundle.raucb").read_bytes())
        assert rel.status_code == 201, rel.text
        for name in creds:
            c.put(f"/api/v1/devices/{name}/desired-release", json={"release_id": rel.json()["id"]}).raise_for_status()
        urls = {name: _warm(srv, cred) for name, cred in creds.items()}

        c.delete("/api/v1/devices/gone").raise_for_status()
        time.sleep(1.0)
        _refused_everywhere(srv, creds["gone"], urls["gone"])

        c.post("/api/v1/devices/reset/reset-credential").raise_for_status()
        time.sleep(1.0)
        _refused_everywhere(srv, creds["reset"], urls["reset"])

        c.post("/api/v1/devices/off/disable").raise_for_status()
        time.sleep(1.0)
        _refused_everywhere(srv, creds["off"], urls["off"], status=403)


def test_a_revoked_api_token_is_refused_by_every_worker_within_a_second(tmp_path: Path) -> None:
    with live_server(tmp_path / "srv", workers=2) as srv, srv.client(srv.tenant()) as c:
        ci = c.post("/api/v1/tokens", json={"name": "ci", "user": "ci-bot", "role": "operator"}).json()["token"]
        for _ in range(ROUNDS):
            with httpx.Client(base_url=srv.url, headers={"authorization": f"Bearer {ci}"}) as x:
                assert x.get("/api/v1/devices").status_code == 200
        token_id = next(t["id"] for t in c.get("/api/v1/tokens").json() if t["name"] == "ci")
        c.delete(f"/api/v1/tokens/{token_id}").raise_for_status()
        time.sleep(1.0)
        for _ in range(ROUNDS):
            with httpx.Client(base_url=srv.url, headers={"authorization": f"Bearer {ci}"}) as x:
                assert x.get("/api/v1/devices").status_code == 401
