"""Artifact delivery with curl and httpx: ranges, multipart, If-Range, 416, HEAD, signed URLs, byte counts."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RAUC_DATA, need_tool
from tests.server.conftest import LiveServer

ALL_STORES = True  # the tests taking `server` run on the S3 store too (tests/server/conftest.py)

GOOD = RAUC_DATA / "good-verity-bundle.raucb"
DATA = GOOD.read_bytes() if RAUC_DATA.is_dir() else b""


@pytest.fixture(scope="module")
def fleet(server: LiveServer) -> dict[str, Any]:
    token = server.tenant()
    with server.client(token) as c:
        rel = c.post("/api/v1/releases", content=DATA).json()
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
        devs = [
            c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": f"d{i}", "compatible": "Test Config"}).json()
            for i in range(2)
        ]
        c.put("/api/v1/devices/d0/desired-release", json={"release_id": rel["id"]}).raise_for_status()
    return {"token": token, "release": rel, "devices": devs}


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([need_tool("curl", "curl"), "-s", "-D", "-", *args], capture_output=True, check=True)


def split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def url(server: LiveServer, fleet: dict[str, Any]) -> tuple[str, str]:
    return f"{server.url}/device/v1/releases/{fleet['release']['id']}/bundle", fleet["devices"][0]["credential"]


def test_single_range(server: LiveServer, fleet: dict[str, Any]) -> None:
    u, cred = url(server, fleet)
    status, h, body = split(curl("-H", f"Authorization: Bearer {cred}", "-H", "Range: bytes=0-3", u).stdout)
    assert status == 206
    assert h["content-range"] == f"bytes 0-3/{len(DATA)}"
    assert body == DATA[:4] == b"hsqs"
    assert h["accept-ranges"] == "bytes" and "content-encoding" not in h
    assert h["etag"] == f'"{fleet["release"]["sha256"]}"'


def test_two_ranges_multipart(server: LiveServer, fleet: dict[str, Any]) -> None:
    u, cred = url(server, fleet)
    status, h, body = split(curl("-H", f"Authorization: Bearer {cred}", "-H", "Range: bytes=0-99,1000-1499", u).stdout)
    assert status == 206
    boundary = re.match(r"multipart/byteranges; boundary=(\S+)", h["content-type"]).group(1)  # type: ignore[union-attr]
    parts = body.split(f"--{boundary}".encode())
    assert parts[-1] == b"--\r\n"
    got = []
    for part in parts[1:-1]:
        phead, _, pbody = part.partition(b"\r\n\r\n")
        cr = re.search(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)", phead)
        assert cr is not None
        start, end, total = map(int, cr.groups())
        assert total == len(DATA)
        assert pbody[:-2] == DATA[start : end + 1] and pbody.endswith(b"\r\n")
        got.append((start, end))
    assert got == [(0, 99), (1000, 1499)]
    assert int(h["content-length"]) == len(body)


@pytest.mark.parametrize("rng,expect", [("bytes=-10", (len(DATA) - 10, len(DATA) - 1)), ("bytes=26000-", (26000, len(DATA) - 1))])
def test_suffix_and_open_ranges(server: LiveServer, fleet: dict[str, Any], rng: str, expect: tuple[int, int]) -> None:
    u, cred = url(server, fleet)
    status, h, body = split(curl("-H", f"Authorization: Bearer {cred}", "-H", f"Range: {rng}", u).stdout)
    assert status == 206 and body == DATA[expect[0] : expect[1] + 1]
    assert h["content-range"] == f"bytes {expect[0]}-{expect[1]}/{len(DATA)}"


def test_range_past_end_is_416(server: LiveServer, fleet: dict[str, Any]) -> None:
    u, cred = url(server, fleet)
    status, h, _ = split(curl("-H", f"Authorization: Bearer {cred}", "-H", f"Range: bytes={len(DATA)}-", u).stdout)
    assert status == 416 and h["content-range"] == f"bytes */{len(DATA)}"


def test_too_many_ranges_is_416(server: LiveServer, fleet: dict[str, Any]) -> None:
    u, cred = url(server, fleet)
    many = ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(100))
    status, _, _ = split(curl("-H", f"Authorization: Bearer {cred}", "-H", f"Range: bytes={many}", u).stdout)
    assert status == 416


def test_if_range(server: LiveServer, fleet: dict[str, Any]) -> None:
    u, cred = url(server, fleet)
    etag = f'"{fleet["release"]["sha256"]}"'
    s1, _, b1 = split(curl("-H", f"Authorization: Bearer {cred}", "-H", "Range: bytes=0-9", "-H", f"If-Range: {etag}", u).stdout)
    assert s1 == 206 and b1 == DATA[:10]
    s2, _, b2 = split(curl("-H", f"Authorization: Bearer {cred}", "-H", "Range: bytes=0-9", "-H", 'If-Range: "stale"', u).stdout)
    assert s2 == 200 and b2 == DATA


def test_head_and_full_get(server: LiveServer, fleet: dict[str, Any]) -> None:
    u, cred = url(server, fleet)
    head = subprocess.run(
        [need_tool("curl", "curl"), "-s", "-I", "-H", f"Authorization: Bearer {cred}", u], capture_output=True, check=True
    ).stdout
    status, h, body = split(head)
    assert status == 200 and int(h["content-length"]) == len(DATA) and body == b""
    status, _, body = split(curl("-H", f"Authorization: Bearer {cred}", u).stdout)
    assert status == 200 and body == DATA


def test_device_needs_credential_and_same_compatible(server: LiveServer, fleet: dict[str, Any]) -> None:
    u, _ = url(server, fleet)
    assert split(curl(u).stdout)[0] == 401
    assert split(curl("-H", "Authorization: Bearer bhd_forged", u).stdout)[0] == 401
    other = server.tenant()
    with server.client(other) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "x"}).json()["token"]
        stranger = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": "s", "compatible": "Test Config"}).json()
    assert split(curl("-H", f"Authorization: Bearer {stranger['credential']}", u).stdout)[0] == 404


def test_signed_url_and_byte_counting(server: LiveServer, fleet: dict[str, Any]) -> None:
    cred = fleet["devices"][0]["credential"]
    with server.client(cred) as dc:
        state = dc.get("/device/v1/state")
        assert state.status_code == 200
        signed = state.json()["desired"]["release"]["signed_url"]
        assert dc.get("/device/v1/state", headers={"if-none-match": state.headers["etag"]}).status_code == 304
    status, _, body = split(curl("-H", "Range: bytes=100-199", signed).stdout)
    assert status == 206 and body == DATA[100:200]
    assert split(curl(signed.replace("&s=", "&s=00")).stdout)[0] == 403
    assert split(curl(re.sub(r"e=\d+", "e=1", signed)).stdout)[0] == 403
    deadline = time.monotonic() + 15
    with server.client(fleet["token"]) as c:
        while time.monotonic() < deadline:
            served = c.get("/api/v1/devices/d0").json()["bytes_served"]
            if served >= 100:
                break
            time.sleep(0.5)
    assert served >= 100


def test_open_artifact_is_dropped_once_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bulkhead.server.delivery import app as delivery

    f = tmp_path / ("ab" * 32)
    f.write_bytes(b"v1")
    art = delivery.Artifact("ab" * 32, 2, str(f))
    dapp = delivery.DeliveryApp.__new__(delivery.DeliveryApp)  # only its descriptor cache is used here
    dapp._files = {}
    first = dapp._open(art)
    assert dapp._open(art) is first and first.etag == f'"{"ab" * 32}"'
    f.unlink()
    monkeypatch.setattr(delivery, "_RECHECK", 0.0)  # the link count is looked at again on the next request
    with pytest.raises(FileNotFoundError):
        dapp._open(art)
    assert dapp._files == {}
    f.write_bytes(b"v1")  # uploaded again: a new file, opened afresh
    again = dapp._open(art)
    assert again is not first and os.pread(again.fd, 2, 0) == b"v1" and os.fstat(again.fd).st_nlink == 1
