"""Delivery offloaded to real nginx with contrib/nginx/bulkhead-offload.conf (X-Accel-Redirect).

The server authorizes, nginx sends the bytes: the RFC 7233 delivery suite (tests/server/test_delivery.py) runs
through it unchanged, refusals are the server's own answers, and the devices' byte counters match what nginx
sent (whole files, ranges, an aborted download), once, across a restart and with two server processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RAUC_DATA
from tests.live import LiveServer, free_port, live_server, stop

# The RFC 7233 suite, run here against nginx in front of an offloading server (`server` below).
from tests.server.test_delivery import (  # noqa: F401
    fleet,
    test_device_needs_credential_and_same_compatible,
    test_head_and_full_get,
    test_if_range,
    test_range_past_end_is_416,
    test_signed_url_and_byte_counting,
    test_single_range,
    test_suffix_and_open_ranges,
    test_too_many_ranges_is_416,
    test_two_ranges_multipart,
)

CONF = Path(__file__).parents[2] / "contrib" / "nginx" / "bulkhead-offload.conf"
GOOD = RAUC_DATA / "good-verity-bundle.raucb"


@contextmanager
def offload_nginx(work: Path, upstream_port: int, port: int, data: Path, log: Path) -> Iterator[str]:
    """Real nginx running contrib/nginx/bulkhead-offload.conf (ports and paths pointed here) as a child process."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.skip("nginx is not installed: apt install nginx-light")
    work.mkdir(parents=True, exist_ok=True)
    conf = CONF.read_text()
    for old, new in [
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};"),
        ("/var/lib/bulkhead/artifacts", str(data / "artifacts")),
        ("/var/lib/bulkhead/offload-grants", str(data / "offload-grants")),
        ("/var/cache/nginx/bulkhead-auth", str(work / "auth-cache")),
        ("/var/log/nginx/bulkhead-delivery.log", str(log)),
    ]:
        assert old in conf, f"contrib/nginx/bulkhead-offload.conf no longer has {old!r}: update this test with it"
        conf = conf.replace(old, new)
    (work / "bulkhead.conf").write_text(conf)
    temp = "\n".join(f"    {k}_temp_path {work / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (work / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {work / 'nginx.pid'};\nerror_log {work / 'error.log'} info;\n"
        f"events {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n{temp}\n    include {work / 'bulkhead.conf'};\n}}\n"
    )
    proc = subprocess.Popen(
        [exe, "-p", str(work), "-c", str(work / "nginx.conf"), "-e", str(work / "error.log")],
        stdout=(work / "nginx.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nginx exited: {(work / 'error.log').read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), 1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nginx did not listen in 20 s")
                time.sleep(0.1)
        yield url
    finally:
        stop(proc, 10)  # a graceful stop writes the log's buffer out


@dataclasses.dataclass
class Offload:
    server: LiveServer  # the server itself
    url: str  # nginx, the public URL
    log: Path
    nginx_pid: Path  # nginx runs as one process (master_process off): the one that sends


@contextmanager
def offload_stack(tmp: Path, workers: int = 1, port: int | None = None, nginx_port: int | None = None) -> Iterator[Offload]:
    port, nginx_port = port or free_port(), nginx_port or free_port()
    log = tmp / "delivery.log"
    env = {
        "BULKHEAD_PUBLIC_URL": f"http://127.0.0.1:{nginx_port}",
        "BULKHEAD_DELIVERY_OFFLOAD": "x-accel",
        "BULKHEAD_DELIVERY_OFFLOAD_PREFIX": "/_store/",
        "BULKHEAD_DELIVERY_OFFLOAD_LOG": str(log),
        "BULKHEAD_MAX_UPLOAD_BYTES": str(256 * 1024 * 1024),
        "BULKHEAD_DDI_CERT_HEADER": "X-Ssl-Client-Cn",
        "BULKHEAD_POLL_INTERVAL": "5",
    }
    data = tmp / "server"
    with (
        live_server(data, env, port=port, workers=workers) as srv,
        offload_nginx(tmp / "nginx", port, nginx_port, data.resolve(), log) as url,
    ):
        yield Offload(srv, url, log, tmp / "nginx" / "nginx.pid")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Offload]:
    with offload_stack(tmp_path_factory.mktemp("offload")) as s:
        yield s


@pytest.fixture(scope="module")
def server(stack: Offload) -> LiveServer:
    """For the imported suite: the server as devices see it, through nginx."""
    return dataclasses.replace(stack.server, url=stack.url)


def log_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_server_answers_x_accel_redirect_and_nginx_sends_the_file(stack: Offload, fleet: dict[str, Any]) -> None:  # noqa: F811
    rel, dev = fleet["release"], fleet["devices"][0]
    path = f"/device/v1/releases/{rel['id']}/bundle"
    auth = {"authorization": f"Bearer {dev['credential']}"}
    direct = httpx.get(stack.server.url + path, headers=auth)
    sha = rel["sha256"]
    assert direct.status_code == 200 and direct.content == b""
    assert direct.headers["x-accel-redirect"] == f"/_store/{sha[:2]}/{sha}"
    assert direct.headers["etag"] == f'"{sha}"' and direct.headers["x-bulkhead-device"].isdigit()
    through = httpx.get(stack.url + path, headers={**auth, "range": "bytes=10-19"})
    assert through.status_code == 206 and through.content == GOOD.read_bytes()[10:20]
    assert through.headers["server"].startswith("nginx") and "x-bulkhead-device" not in through.headers
    assert through.headers["content-type"] == "application/octet-stream"
    assert through.headers["cache-control"] == "private, max-age=0"
    # nginx sent it (the log line names the device the server named), and the store is not reachable directly.
    deadline = time.monotonic() + 5
    while not any(e["range"] == "bytes=10-19" for e in log_lines(stack.log)) and time.monotonic() < deadline:
        time.sleep(0.2)
    line = next(e for e in log_lines(stack.log) if e["range"] == "bytes=10-19")
    assert line["device"] == direct.headers["x-bulkhead-device"] and line["bytes"] == 10 and line["status"] == 206
    assert httpx.get(f"{stack.url}/_store/{sha[:2]}/{sha}").status_code == 404


def _delivery_requests(stack: Offload, token: str) -> float:
    """Delivery requests the server answered so far (its own metrics)."""
    text = httpx.get(stack.server.url + "/metrics", headers={"authorization": f"Bearer {token}"}).text
    m = re.findall(r'^bulkhead_http_requests_total\{app="delivery",code="(\dxx)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return sum(float(v) for _, v in m)


def test_nginx_answers_ranges_from_a_cached_authorization(stack: Offload, fleet: dict[str, Any]) -> None:  # noqa: F811
    """A device's burst of range requests costs the server about one authorization a second; a 416 is still
    the server's JSON answer."""
    rel, dev = fleet["release"], fleet["devices"][0]
    path = f"/device/v1/releases/{rel['id']}/bundle"
    blob = GOOD.read_bytes()
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {dev['credential']}"}) as d:
        d.get(path, headers={"range": "bytes=0-0"}).raise_for_status()
        before = _delivery_requests(stack, fleet["token"])
        started = time.monotonic()
        for i in range(40):
            r = d.get(path, headers={"range": f"bytes={i * 100}-{i * 100 + 99}"})
            assert r.status_code == 206 and r.content == blob[i * 100 : i * 100 + 100]
            assert r.headers["etag"] == f'"{rel["sha256"]}"' and r.headers["accept-ranges"] == "bytes"
        elapsed = time.monotonic() - started
        asked = _delivery_requests(stack, fleet["token"]) - before
        assert asked <= elapsed + 2, (asked, elapsed)  # one authorization per second, not one per request
        r = d.get(path, headers={"range": f"bytes={len(blob)}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(blob)}"
        assert r.json()["error"] == "range_not_satisfiable"
        # Each header once, whether the range applies or not.
        etag = f'"{rel["sha256"]}"'
        for if_range, status in ((etag, 206), ('"stale"', 200)):
            r = d.get(path, headers={"range": "bytes=5-9", "if-range": if_range})
            assert r.status_code == status and r.headers["accept-ranges"] == "bytes" and r.headers["etag"] == etag
            assert r.headers["cache-control"] == "private, max-age=0"


def test_nginx_sends_an_authorized_range_with_sendfile(stack: Offload, fleet: dict[str, Any]) -> None:  # noqa: F811
    """The bytes go from the page cache to the socket (sendfile), not through nginx's buffers: nginx keeps that
    switch per connection and sets it from the latest (sub)request's location, so the authorization subrequest
    once turned it off for the download that followed (read and write of every byte, ~25 % of the rate lost)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed: apt install strace")
    rel, dev = fleet["release"], fleet["devices"][0]
    path = f"/device/v1/releases/{rel['id']}/bundle"
    pid = stack.nginx_pid.read_text().strip()
    trace = stack.log.parent / "sendfile.strace"
    tracer = subprocess.Popen(["strace", "-f", "-e", "trace=sendfile,read,pread64,readv", "-o", str(trace), "-p", pid],
                              stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert tracer.stderr is not None
        attached = tracer.stderr.readline()  # "strace: Process N attached", or why not
        assert b"attached" in attached, attached
        with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {dev['credential']}"}) as d:
            time.sleep(1.1)  # the cached authorization expired: this download's subrequest goes to the server
            r = d.get(path, headers={"range": "bytes=1000-5095"})
            assert r.status_code == 206 and r.content == GOOD.read_bytes()[1000:5096]
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
    calls = trace.read_text()
    assert re.search(r"sendfile\(\d+, \d+, \[1000\] => \[5096\], 4096\) = 4096", calls), calls[-2000:]
    assert not re.search(r"pread64\(\d+, .*, 4096, 1000\)", calls), calls[-2000:]


def test_refusals_are_the_servers_own_answers(stack: Offload, fleet: dict[str, Any]) -> None:  # noqa: F811
    rel, dev = fleet["release"], fleet["devices"][0]
    path = f"/device/v1/releases/{rel['id']}/bundle"
    with stack.server.client(dev["credential"]) as dc:
        signed = dc.get("/device/v1/state").json()["desired"]["release"]["signed_url"]
    assert signed.startswith(stack.url + "/dl/")
    cases = [
        (path, {}, 401),
        (path, {"authorization": "Bearer bhd_forged"}, 401),
        (signed.replace("&s=", "&s=00"), {}, 403),
        (re.sub(r"e=\d+", "e=1", signed), {}, 403),
        ("/device/v1/releases/999999/bundle", {"authorization": f"Bearer {dev['credential']}"}, 404),
    ]
    for url, headers, status in cases:
        full = url if url.startswith("http") else stack.url + url
        via, own = httpx.get(full, headers=headers), httpx.get(full.replace(stack.url, stack.server.url), headers=headers)
        assert via.status_code == own.status_code == status, (url, via.text)
        assert via.json()["error"] == own.json()["error"] and via.json()["message"] == own.json()["message"]
        assert "x-accel-redirect" not in own.headers
    with stack.server.client(fleet["token"]) as c:  # a disabled device: 403, and its signed URL too
        c.post("/api/v1/devices/d0/disable").raise_for_status()
        try:
            deadline = time.monotonic() + 10
            while (r := httpx.get(signed)).status_code != 403 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert r.status_code == 403 and "disabled" in r.json()["message"]
            bearer = {"authorization": f"Bearer {dev['credential']}"}
            own = httpx.get(stack.server.url + path, headers=bearer)
            assert own.status_code in (401, 403), f"the server itself answers a disabled device {own.status_code}"
            # nginx reuses a "yes" for 1 s per URL and credential (docs/adr/0008): refused once that has passed
            deadline = time.monotonic() + 5
            while (r := httpx.get(stack.url + path, headers=bearer)).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert r.status_code in (401, 403) and r.json()["error"]
        finally:
            c.post("/api/v1/devices/d0/enable").raise_for_status()


def _grants(stack: Offload) -> list[Path]:
    return sorted(p for p in (stack.server.data_dir / "offload-grants").rglob("*") if p.is_file())


def test_a_signed_url_the_server_granted_is_served_by_nginx_alone(stack: Offload, fleet: dict[str, Any]) -> None:  # noqa: F811
    """RAUC streams a bundle in thousands of ranges of one signed URL: after the first, authorized by the server,
    nginx answers them itself (the grant file) with the server's headers, and counts their bytes; any other URL,
    a tampered one included, is still the server's to answer."""
    rel, dev = fleet["release"], fleet["devices"][0]
    sha, blob = rel["sha256"], GOOD.read_bytes()
    with stack.server.client(dev["credential"]) as dc:
        signed = dc.get("/device/v1/state").json()["desired"]["release"]["signed_url"]
    device, expires, epoch, sig = (re.search(rf"[?&]{k}=([0-9a-f]+)", signed).group(1) for k in "deks")  # type: ignore[union-attr]
    grant = stack.server.data_dir / "offload-grants" / device / epoch / f"{sha}.{expires}.{sig}"
    first = httpx.get(signed, headers={"range": "bytes=0-9"})
    assert first.status_code == 206 and first.content == blob[:10] and grant.is_file()
    time.sleep(1.5)  # nginx writes out its log buffer every second: what was sent so far is in the file
    logged = len(log_lines(stack.log))
    before = _delivery_requests(stack, fleet["token"])
    etag = f'"{sha}"'
    with httpx.Client() as d:
        for i in range(60):
            r = d.get(signed, headers={"range": f"bytes={i * 97}-{i * 97 + 96}"})
            assert r.status_code == 206 and r.content == blob[i * 97 : i * 97 + 97], r.text
            assert r.headers["etag"] == etag and r.headers["accept-ranges"] == "bytes" and r.headers["server"].startswith("nginx")
            assert r.headers["cache-control"] == "private, max-age=0" and r.headers["content-type"] == "application/octet-stream"
        whole = d.get(signed)
        assert whole.status_code == 200 and whole.content == blob and whole.headers["etag"] == etag
        stale = d.get(signed, headers={"range": "bytes=5-9", "if-range": '"stale"'})
        assert stale.status_code == 200 and stale.content == blob and stale.headers["accept-ranges"] == "bytes"
        assert d.get(signed, headers={"range": "bytes=5-9", "if-range": etag}).content == blob[5:10]
        past = d.get(signed, headers={"range": f"bytes={len(blob)}-"})  # the server's JSON 416, from nginx
        assert past.status_code == 416 and past.json()["error"] == "range_not_satisfiable"
    assert _delivery_requests(stack, fleet["token"]) == before, "nginx asked the server about a granted URL"
    deadline = time.monotonic() + 5
    while len(log_lines(stack.log)) < logged + 63 and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = log_lines(stack.log)[logged:]
    assert len(lines) == 63 and {e["device"] for e in lines} == {device}  # the 416 sent no body, is not logged
    assert sum(e["bytes"] for e in lines) == 60 * 97 + 2 * len(blob) + 5
    # Not the granted URL: the server answers (a tampered signature, another expiry, an extra parameter).
    for other in (signed.replace(f"s={sig}", "s=" + "0" * 40), signed.replace(f"e={expires}", "e=1"), signed + "&x=1"):
        via, own = httpx.get(other), httpx.get(other.replace(stack.url, stack.server.url))
        assert via.status_code == own.status_code == 403 and via.json()["message"] == own.json()["message"]
    assert _grants(stack) == [grant]


def test_a_disabled_or_reset_device_loses_its_grants_within_seconds(stack: Offload, fleet: dict[str, Any]) -> None:  # noqa: F811
    rel, dev = fleet["release"], fleet["devices"][0]
    with stack.server.client(dev["credential"]) as dc:
        signed = dc.get("/device/v1/state").json()["desired"]["release"]["signed_url"]
    assert httpx.get(signed, headers={"range": "bytes=0-9"}).status_code == 206 and _grants(stack)
    with stack.server.client(fleet["token"]) as c:
        c.post("/api/v1/devices/d0/disable").raise_for_status()
        started = time.monotonic()
        try:
            while (r := httpx.get(signed, headers={"range": "bytes=0-9"})).status_code == 206 and time.monotonic() - started < 10:
                time.sleep(0.1)
            took = time.monotonic() - started
            assert r.status_code == 403 and "disabled" in r.json()["message"] and not _grants(stack)
            assert took < 5, f"nginx served a disabled device's signed URL for {took:.1f} s"
        finally:
            c.post("/api/v1/devices/d0/enable").raise_for_status()
    # Disabling raised the credential epoch: the old URL stays refused, a new one is granted under the new epoch.
    with stack.server.client(dev["credential"]) as dc:
        fresh = dc.get("/device/v1/state").json()["desired"]["release"]["signed_url"]
    assert httpx.get(signed, headers={"range": "bytes=0-9"}).status_code == 403
    assert httpx.get(fresh, headers={"range": "bytes=0-9"}).status_code == 206
    (grant,) = _grants(stack)
    assert grant.parent.name == re.search(r"[?&]k=([0-9]+)", fresh).group(1) != re.search(r"[?&]k=([0-9]+)", signed).group(1)  # type: ignore[union-attr]
    assert grant.name.startswith(rel["sha256"] + ".")


def test_ddi_artifacts_through_offload(stack: Offload, fleet: dict[str, Any]) -> None:  # noqa: F811
    """A hawkBit client's artifact (TargetToken) and its .MD5SUM come through nginx; a header naming a certificate
    nginx did not verify counts for nothing."""
    rel = fleet["release"]
    blob = GOOD.read_bytes()
    with stack.server.client(fleet["token"]) as c:
        tenant = c.get("/api/v1/tenant").json()["name"]
        target = c.post("/api/v1/devices", json={"name": "ddi-off", "compatible": "Test Config"}).json()["target_token"]
        c.put("/api/v1/devices/ddi-off/desired-release", json={"release_id": rel["id"]}).raise_for_status()
    root = f"{stack.url}/{tenant}/controller/v1/ddi-off"
    with httpx.Client(headers={"authorization": f"TargetToken {target}"}, timeout=30) as dev:
        deadline = time.monotonic() + 20
        while "deploymentBase" not in (links := dev.get(root).json().get("_links", {})) and time.monotonic() < deadline:
            time.sleep(0.2)
        dep = dev.get(links["deploymentBase"]["href"]).json()
        art = dep["deployment"]["chunks"][0]["artifacts"][0]
        href = art["_links"]["download"]["href"]
        assert href.startswith(root + "/softwaremodules/")
        part = dev.get(href, headers={"range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == blob[100:200] and part.headers["server"].startswith("nginx")
        assert dev.get(href).content == blob
        md5 = dev.get(art["_links"]["md5sum"]["href"])
        assert md5.status_code == 200 and md5.text.split()[0] == art["hashes"]["md5"]
    forged = httpx.get(href, headers={"X-Ssl-Client-Cn": "ddi-off", "range": "bytes=0-9"})
    assert forged.status_code == 401 and forged.json()["error"]


def test_a_rotated_delivery_log_loses_and_repeats_nothing(stack: Offload, fleet: dict[str, Any]) -> None:  # noqa: F811
    """logrotate's way (rename, then USR1 so nginx opens a new file): bytes logged before and after count once."""
    rel, dev = fleet["release"], fleet["devices"][1]
    path = f"{stack.url}/device/v1/releases/{rel['id']}/bundle"
    auth = {"authorization": f"Bearer {dev['credential']}"}
    before = _served(stack.server, fleet["token"], "d1")
    assert httpx.get(path, headers={**auth, "range": "bytes=0-99"}).status_code == 206
    time.sleep(1.5)  # in the file before it is rotated
    stack.log.rename(stack.log.with_name(stack.log.name + ".1"))
    assert httpx.get(path, headers={**auth, "range": "bytes=0-199"}).status_code == 206  # still to the old file
    pid = int((stack.log.parent / "nginx" / "nginx.pid").read_text())
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not stack.log.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(path, headers={**auth, "range": "bytes=0-299"}).status_code == 206  # to the new file
    assert _wait_served(stack.server, fleet["token"], "d1", before + 600) == before + 600
    time.sleep(6)  # another round of reading both files
    assert _served(stack.server, fleet["token"], "d1") == before + 600


def _big_release(srv: LiveServer, work: Path, mib: int) -> tuple[str, dict[str, Any], bytes]:
    """A tenant with a signed bundle of `mib` MiB of random data; returns its token, the release and the bytes."""
    from bulkhead.lab.pki import make_pki
    from bulkhead.rauc import create_bundle

    pki = make_pki(work / "pki")
    content = work / "content"
    content.mkdir(parents=True, exist_ok=True)
    (content / "rootfs.img").write_bytes(os.urandom(mib << 20))
    (content / "manifest.raucm").write_text("[update]\ncompatible=big\nversion=2\n\n[image.rootfs]\nfilename=rootfs.img\n")
    bundle = work / "big.raucb"
    create_bundle(content, bundle, pki.cert.read_bytes(), pki.key.read_bytes(), mksquashfs_args=["-noI", "-noD", "-noF", "-noX"])
    token = srv.tenant(ca=pki.ca)
    blob = bundle.read_bytes()
    with srv.client(token) as c:
        r = c.post("/api/v1/releases", content=blob, timeout=120)
        assert r.status_code == 201, r.text
        return token, r.json(), blob


def _abort_after(url: str, path: str, credential: str, keep: int) -> int:
    """GET the whole file, read `keep` bytes of body and reset the connection; returns the body bytes read."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), 10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\n\r\n".encode())
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        body = len(got.partition(b"\r\n\r\n")[2])
        while body < keep:
            body += len(s.recv(65536))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    return body


def _served(srv: LiveServer, token: str, name: str) -> int:
    with srv.client(token) as c:
        return int(c.get(f"/api/v1/devices/{name}").json()["bytes_served"])


def _wait_served(srv: LiveServer, token: str, name: str, want: int, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while (got := _served(srv, token, name)) != want and time.monotonic() < deadline:
        time.sleep(0.5)
    return got


def test_byte_counters_match_what_nginx_sent(tmp_path: Path) -> None:
    """Whole, ranged, multi-range (the server's own), HEAD, 416 and an aborted download: the device's counter is
    exactly the bytes sent, with two server processes reading the log, and stays so across a restart."""
    port, nginx_port = free_port(), free_port()
    with offload_stack(tmp_path, workers=2, port=port, nginx_port=nginx_port) as st:
        token, rel, blob = _big_release(st.server, tmp_path, 48)
        with st.server.client(token) as c:
            boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
            cred = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": "acct", "compatible": "big"}).json()[
                "credential"
            ]
        path = f"/device/v1/releases/{rel['id']}/bundle"
        auth = {"authorization": f"Bearer {cred}"}
        with httpx.Client(base_url=st.url, headers=auth, timeout=60) as d:
            assert d.get(path).content == blob
            assert d.get(path, headers={"range": "bytes=1000-1999"}).content == blob[1000:2000]
            assert d.get(path, headers={"range": f"bytes=-{4096}"}).content == blob[-4096:]
            assert d.head(path).status_code == 200
            assert d.get(path, headers={"range": f"bytes={len(blob)}-"}).status_code == 416
            multi = d.get(path, headers={"range": "bytes=0-99,200-299"})  # sent by the server itself
            assert multi.status_code == 206 and multi.headers.get("server", "").startswith("nginx")
        received = _abort_after(st.url, path, cred, 1 << 20)
        time.sleep(2)  # nginx writes its log buffer within a second
        aborted = [e["bytes"] for e in log_lines(st.log) if e["status"] == 200 and 0 < e["bytes"] < len(blob)]
        assert len(aborted) == 1 and received <= aborted[0] < len(blob), (received, aborted)
        want = len(blob) + 1000 + 4096 + 200 + aborted[0]
        assert _wait_served(st.server, token, "acct", want) == want
    # A restart (same database, same log; nginx keeps writing to it) counts nothing twice, and later bytes once.
    with offload_stack(tmp_path, workers=2, port=port, nginx_port=nginx_port) as st:
        time.sleep(12)  # two rounds of reading the log in each process
        assert _served(st.server, token, "acct") == want
        with httpx.Client(base_url=st.url, headers=auth, timeout=60) as d:
            assert d.get(path, headers={"range": "bytes=0-4095"}).status_code == 206
        assert _wait_served(st.server, token, "acct", want + 4096) == want + 4096
